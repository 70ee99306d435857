"""Teacher-output cache: run the teacher once, distil many students (Fast Knowledge Distillation,
Shen & Xing, ECCV 2022), with mixed views for function matching (Beyer et al., CVPR 2022).

For every training image, K views are recorded. A view is the image augmented by the pipeline seeded
with its seed (the seed reproduces every parameter: flips, affine matrix, colour factors, dropout holes)
and, for a mixed view, blended with a partner image's own augmented view: mixup (own share ``w``) or
CutMix (the partner pasted into a box; ``w`` = the own image's remaining area). The teacher runs once
on each view at its own input size; its logits are stored. In the same pass every view is resized to
the student's input size and stored too, so training reads pixels and logits and augments nothing.
``CachedViews`` (a dataset wrapper, like torchdistill's ``CacheableDataset``) replays one recorded view
of each image per epoch, drawn anew each time, with the teacher's logits for exactly that view.

Files in ``cache_dir``, named by a hash of everything the outputs depend on (teacher weights and
precision, image files, the augmentation pipeline's own serialisation, views, mixing, seed; see
``cache_key``), so outputs made under another definition are not reused:
``<stem>.record.pt`` (seeds, partners, weights, boxes), ``<stem>.logits.npy`` (float32 N x K x C),
``<stem>.<S>px-hwc-u8.npy`` (uint8 N x K x S x S x 3, the student's views) and a ``.progress.json`` beside each
``.npy``. Both arrays are memory-mapped: RAM holds what the page cache keeps. A fill that is stopped
resumes where it stopped; several processes (DDP ranks) fill disjoint shares of the same files.
"""

from distill.cache.callback import CacheSettings, FilledCache, TeacherCache, fill_teacher_cache
from distill.cache.fill import fill_share, teacher_forward
from distill.cache.replay import CachedViews
from distill.cache.store import ViewCache, cache_key
from distill.cache.views import MixSpec, ViewRecord, draw_views, render_view

__all__ = ["TeacherCache", "CacheSettings", "FilledCache", "fill_teacher_cache", "ViewCache", "CachedViews",
           "MixSpec", "ViewRecord", "cache_key", "draw_views", "render_view", "fill_share", "teacher_forward"]

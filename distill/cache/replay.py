"""Replaying the cache: a training set whose items are recorded views with the teacher's logits for them."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from distill.cache.views import ViewRecord, render_view
from distill.images import ImageDataset, collate


class CachedViews(Dataset):
    """A training set whose items replay one recorded view per image (drawn anew each time) with the
    teacher's logits for exactly that view: ``{"image", "label", "index", "teacher_logits"}``, plus
    ``partner_label`` and ``mix_weight`` (the own label's share) when the cache records mixed views.

    ``rendered``: the views already resized to the student's size (``N x K x S x S x 3``); else each view is rendered again from
    its record at the base size."""

    def __init__(self, dataset: ImageDataset, record: ViewRecord, logits: np.ndarray,
                 rendered: np.ndarray | None = None):
        self.dataset, self.record, self.logits, self.rendered = dataset, record, logits, rendered
        self.labels = torch.tensor([s.label for s in dataset.samples])
        # once, not per item: ``record.mixed`` scans every image's partners
        self.mixed = record.mixed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, indices: list[int]) -> dict:
        """A whole batch, already collated (the ``DataLoader`` calls this instead of one ``__getitem__`` per image):
        one random view per image, gathered from the rendered views and logits in one indexing each, the images a
        channels-last ``B x 3 x S x S`` uint8 batch. Views that are not stored rendered are rendered one by one."""
        if self.rendered is None:
            return collate([self[i] for i in indices])
        index = np.asarray(indices, dtype=np.int64)
        k = torch.randint(0, self.record.views, (len(index),)).numpy()
        images = torch.from_numpy(np.ascontiguousarray(self.rendered[index, k])).permute(0, 3, 1, 2)
        labels = self.labels[index]
        batch = {"image": images, "label": labels, "index": torch.from_numpy(index),
                 "teacher_logits": torch.from_numpy(np.ascontiguousarray(self.logits[index, k]))}
        if self.mixed:
            partners = self.record.partners[index, k]
            batch["partner_label"] = torch.where(partners >= 0, self.labels[partners.clamp(min=0)], labels)
            batch["mix_weight"] = self.record.weights[index, k].double()
        return batch

    def __getitem__(self, index: int) -> dict:
        k = int(torch.randint(0, self.record.views, ()).item())
        if self.rendered is not None:
            image = torch.from_numpy(np.array(self.rendered[index, k])).permute(2, 0, 1)  # stored S x S x 3
        else:
            image = render_view(self.dataset, self.record, index, k)
        item = {"image": image, "label": int(self.labels[index]), "index": index,
                "teacher_logits": torch.from_numpy(np.array(self.logits[index, k]))}
        if self.mixed:
            partner = int(self.record.partners[index, k])
            item["partner_label"] = int(self.labels[partner]) if partner >= 0 else item["label"]
            item["mix_weight"] = float(self.record.weights[index, k])
        return item

"""The competition's score and its constants (lower is better; it can go negative)."""
from __future__ import annotations

F1_BASE = 0.8367
MACS_BASE = 13_878_369


def competition_score(f1: float, macs: float, f1_base: float = F1_BASE, macs_base: float = MACS_BASE) -> float:
    """``macs / macs_base + s_f1``; lower is better and may be negative.

    ``s_f1`` is 1 when F1 < 0.5, ``1 - F1/F1_base`` when F1 < F1_base, else ``0.5 * (1 - F1/F1_base)``.
    """
    if not 0.0 <= f1 <= 1.0:
        raise ValueError(f"f1 must be in [0, 1], got {f1}")
    if macs < 0 or f1_base <= 0 or macs_base <= 0:
        raise ValueError("macs must be >= 0 and the baselines > 0")
    if f1 < 0.5:
        s_f1 = 1.0
    elif f1 < f1_base:
        s_f1 = 1.0 - f1 / f1_base
    else:
        s_f1 = 0.5 * (1.0 - f1 / f1_base)
    return macs / macs_base + s_f1

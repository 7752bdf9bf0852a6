"""What a DPO run is asked to do, and what it found (plain values: no torch here, so the
command line checks its inputs before anything heavy is imported)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DPOSettings:
    max_steps: int
    batch_size: int = 8
    learning_rate: float = 5e-4
    beta: float = 0.1  # DPO's KL strength
    lora_r: int = 16
    lora_alpha: int = 32
    eval_every: int = 10
    seed: int = 0


@dataclass
class EvalPoint:
    step: int
    accuracy: float
    margin: float
    loss: float


@dataclass
class DPOOutcome:
    best: EvalPoint
    history: list[EvalPoint] = field(default_factory=list)
    resumed_from: int | None = None  # the step a resumed run started at
    steps: int = 0

"""FGSM and PGD (L-inf) on the standardized inputs the model sees, with the budget in units of
the raw input (digits' pixels 0..16, 8-bit images 0..255) and adversarial inputs clipped to the
data's valid range. Input gradients come from `torch.autograd.grad`, so the parameters' `.grad`
(and the training step around an attack) are left alone. The model is attacked in eval mode:
the attack's forward passes neither update batch-norm statistics nor drop units.

torchattacks clamps inputs to [0, 1] and needs torchvision; ART works in numpy: neither fits
standardized tensors on the model's device, hence these few lines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

METHODS = ("fgsm", "pgd")
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # output, y -> a scalar


class InputRange:
    """The data's valid range and its scale in the standardized space: `low`/`high` bound each
    channel (images) or feature (tables); `unit` is one raw unit in standardized units (1/std).
    Built from the data module's `input_range` (plain lists, per channel/feature or one value)."""

    def __init__(self, ranges: dict[str, Sequence[float]]) -> None:
        self.low, self.high, self.unit = (
            torch.tensor(ranges[k], dtype=torch.float32) for k in ("low", "high", "unit")
        )

    def _shaped(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        t = t.to(like.device, like.dtype)
        if t.numel() == 1:
            return t.reshape(())
        return t.view(1, -1, *[1] * (like.ndim - 2))  # (C,) over (N, C, H, W); (F,) over (N, F)

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        return torch.maximum(
            torch.minimum(x, self._shaped(self.high, x)), self._shaped(self.low, x)
        )

    def raw(self, amount: float, like: torch.Tensor) -> torch.Tensor:
        """`amount` raw input units in the standardized space of `like`."""
        return amount * self._shaped(self.unit, like)


class Attack:
    """`method` (fgsm or pgd) with an L-inf budget `eps` and PGD's `steps` of size `alpha`,
    both in raw input units (`alpha` None: 2.5 x eps / steps, Madry et al.'s rule)."""

    def __init__(
        self,
        method: str,
        eps: float,
        input_range: InputRange,
        steps: int = 10,
        alpha: float | None = None,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"attack {method!r}: one of {', '.join(METHODS)}")
        self.method, self.eps, self.steps, self.range = method, float(eps), int(steps), input_range
        self.alpha = float(alpha) if alpha is not None else 2.5 * self.eps / self.steps

    def __call__(
        self, model: nn.Module, loss: Loss, x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """Adversarial versions of the standardized batch `x` (detached)."""
        was_training = model.training
        model.eval()
        # cuDNN's RNN kernels take no backward pass in eval mode: torch's own ones then
        recurrent = x.is_cuda and any(isinstance(m, nn.RNNBase) for m in model.modules())
        try:
            with torch.enable_grad(), torch.backends.cudnn.flags(enabled=not recurrent):
                if self.method == "fgsm":
                    return self._fgsm(model, loss, x, y)
                return self._pgd(model, loss, x, y)
        finally:
            model.train(was_training)

    def _step(self, model: nn.Module, loss: Loss, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(model(x), y), x)
        return grad.sign()

    def _project(self, x_adv: torch.Tensor, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return self.range.clip(torch.maximum(torch.minimum(x_adv, x + eps), x - eps)).detach()

    def _fgsm(self, model: nn.Module, loss: Loss, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        eps = self.range.raw(self.eps, x)
        return self._project(x + eps * self._step(model, loss, x, y), x, eps)

    def _pgd(self, model: nn.Module, loss: Loss, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        eps, alpha = self.range.raw(self.eps, x), self.range.raw(self.alpha, x)
        start = (torch.rand_like(x) * 2 - 1) * eps  # a random start in the eps-ball
        x_adv = self._project(x + start, x, eps)
        for _ in range(self.steps):
            x_adv = self._project(x_adv + alpha * self._step(model, loss, x_adv, y), x, eps)
        return x_adv


def test_attacks(eval_cfg: Any, input_range: dict | None) -> dict[str, Attack]:
    """`eval.attacks` as Attack objects by name, at `eval.eps` (none when the list is empty)."""
    if eval_cfg is None or not eval_cfg.get("attacks"):
        return {}
    if input_range is None:
        raise ValueError("eval.attacks needs the data's input range (the data module's)")
    bounds = InputRange(input_range)
    return {
        name: Attack(name, eval_cfg.eps, bounds, eval_cfg.steps, eval_cfg.get("alpha"))
        for name in eval_cfg.attacks
    }


class RobustAccuracy:
    """Accuracy under each of `eval.attacks` on the test split: each test batch is attacked
    (`update`), the hits are summed over ranks once at the end (`compute`)."""

    def __init__(self, eval_cfg: Any, input_range: dict | None) -> None:
        self.attacks = test_attacks(eval_cfg, input_range)  # name -> Attack
        self._hits: dict[str, list[torch.Tensor]] = {name: [] for name in self.attacks}
        self._attacked = 0  # test samples attacked on this rank

    def __bool__(self) -> bool:
        return bool(self.attacks)

    def update(self, model: nn.Module, loss: Loss, x: torch.Tensor, y: torch.Tensor) -> None:
        """Attack the standardized batch `x` with each attack; count the predictions that
        stay right."""
        self._attacked += len(y)
        # Lightning tests under inference mode; an attack needs the input's gradient
        with torch.inference_mode(False):
            x, y = x.clone(), y.clone()
            for name, attack in self.attacks.items():
                adversarial = attack(model, loss, x, y)
                with torch.no_grad():
                    self._hits[name].append((model(adversarial).argmax(1) == y).sum())

    def compute(
        self, reduce_sum: Callable[[torch.Tensor], torch.Tensor], device: torch.device
    ) -> dict[str, float]:
        """`test/acc_<attack>` over all ranks (`reduce_sum`: the strategy's sum, of a tensor on
        `device`); resets for the next test."""
        metrics = {}
        for name, hits in self._hits.items():
            correct = float(torch.stack(hits).sum()) if hits else 0.0
            sums = torch.tensor([correct, self._attacked], dtype=torch.float64, device=device)
            correct, attacked = reduce_sum(sums).tolist()
            metrics[f"test/acc_{name}"] = correct / attacked
            hits.clear()
        self._attacked = 0
        return metrics

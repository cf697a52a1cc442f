"""Differentially private training (`privacy=dp`): DP-SGD through Opacus, inside dnnexp's loop.

Opacus's pieces are used one by one rather than through `PrivacyEngine.make_private`, which
would replace the model, the optimizer and the loader at once:
- `GradSampleModule` hooks the model's layers, so each backward also leaves every sample's
  gradient (`p.grad_sample`). The model itself stays the module the checkpoints hold (`model.*`
  keys, no `_module.` prefix): the hooks act only while the model trains.
- `DPOptimizer` wraps the run's optimizer: each step clips every sample's gradient to
  `max_grad_norm`, adds Gaussian noise of std `noise_multiplier x max_grad_norm` to their sum
  and divides by the expected batch size, then steps the wrapped optimizer.
- The training loader draws Poisson batches (`data/loader.py`: each sample with probability
  q = batch_size / N), as the accountant assumes.
- The accountant (PRV or RDP, Opacus's own) counts one step per optimizer step; its history
  goes into every checkpoint, so a resumed run's ε is the uninterrupted run's.

The ledger (`ledger()`): ε spent so far for δ, with the numbers it came from (σ, q, steps, C),
in every metrics row (`privacy/epsilon`), summary.json and the model card.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from dnnexp.config.errors import RunError

# what ε covers and what it does not, said in the ledger and the README
NOT_COVERED = (
    "statistics fitted on the training split before training (input standardization,"
    " a vocabulary, table categories) and the validation split's use for model selection"
)


def privacy_line(ledger: dict[str, Any]) -> str:
    """A ledger in one line: `ε = 1.98 (δ = 1e-05, prv; σ = 1.21, q = 0.051, 570 steps, C = 1)`."""
    eps = ledger["epsilon"]
    return (
        f"ε = {'inf' if eps is None else f'{eps:.3g}'} (δ = {ledger['delta']:.3g},"
        f" {ledger['accountant']}; σ = {ledger['noise_multiplier']:.3g},"
        f" q = {ledger['sample_rate']:.3g}, {ledger['steps']} steps,"
        f" C = {ledger['max_grad_norm']:g})"
        + (
            ""
            if ledger.get("poisson", True)
            else "; shuffled batches, not the Poisson ones ε assumes"
        )
    )


def default_delta(n: int) -> float:
    """δ when `privacy.delta` is null: below 1/N by a factor of 10 at least."""
    return min(1e-5, 0.1 / n)


class PrivateTraining:
    """The DP-SGD state of one run: noise multiplier, sampling rate, accountant."""

    def __init__(self, knobs: Any) -> None:
        self.knobs = knobs
        self.max_grad_norm = float(knobs.max_grad_norm)
        self.target_epsilon = None if knobs.epsilon is None else float(knobs.epsilon)
        self.noise_multiplier = (
            None if knobs.noise_multiplier is None else float(knobs.noise_multiplier)
        )
        self.sample_rate = 0.0
        self.delta = 0.0
        self.n = 0  # samples in the training split
        self.planned_steps = 0
        self.accountant = _accountant(knobs.accountant)
        self._hooks: Any = None  # the GradSampleModule (not a submodule of the task)
        self._epsilon_at: tuple[int, float] | None = None  # (steps, ε): computed once per count
        self._resumed: tuple[float, float] | None = None  # (σ, q) a checkpoint trained with

    @classmethod
    def from_config(cls, cfg: Any) -> PrivateTraining | None:
        from dnnexp.config.validate import private

        return cls(cfg.privacy) if private(cfg) else None

    # ------------------------------------------------------------------------------ set up
    def attach(self, model: torch.nn.Module) -> None:
        """Per-sample gradient hooks on `model`'s layers; a layer Opacus cannot handle is one
        line (the config check refuses the known cases before this)."""
        from opacus import GradSampleModule
        from opacus.validators import ModuleValidator

        errors = ModuleValidator.validate(model, strict=False)
        if errors:
            raise RunError(f"privacy=dp: {str(errors[0]).splitlines()[0]}")
        # the hooks on a first layer, whose inputs need no gradient: torch's note, not a fault
        warnings.filterwarnings("ignore", message=r"Full backward hook is firing when gradients")
        self._hooks = GradSampleModule(model, batch_first=True, loss_reduction="mean")

    def plan(self, n: int, batch_size: int, steps: int) -> None:
        """The sampling rate (batch_size / N), δ and σ for a run of `steps` optimizer steps over
        N training samples: σ is Opacus's for the target ε when one is set."""
        from opacus.accountants.utils import get_noise_multiplier

        if batch_size >= n:
            raise RunError(
                f"privacy=dp: data.batch_size={batch_size} is not below the training split's"
                f" {n} samples: Poisson sampling needs a rate batch_size/N below 1"
            )
        knobs = self.knobs
        self.n, self.planned_steps = n, steps
        self.sample_rate = batch_size / n
        self.delta = float(knobs.delta) if knobs.delta is not None else default_delta(n)
        if self.delta >= 1 / n:
            raise RunError(
                f"privacy.delta={self.delta:g} is not below 1/N = {1 / n:g} (N = {n} training"
                " samples): a δ that large allows leaking a whole sample; lower it"
            )
        if self.target_epsilon is not None:
            self.noise_multiplier = get_noise_multiplier(
                target_epsilon=self.target_epsilon,
                target_delta=self.delta,
                sample_rate=self.sample_rate,
                steps=steps,
                accountant=knobs.accountant,
                epsilon_tolerance=0.01,
            )
        if self._resumed is not None:
            sigma, q = self._resumed
            if not (
                math.isclose(sigma, self.noise_multiplier) and math.isclose(q, self.sample_rate)
            ):
                raise RunError(
                    f"privacy=dp: the checkpoint trained with noise multiplier {sigma:g} and"
                    f" sampling rate {q:g}, this run plans {self.noise_multiplier:g} and"
                    f" {self.sample_rate:g}: resume with the same privacy and data settings"
                )

    def wrap(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """The run's optimizer as a DPOptimizer: clipping, noise, division by q*N."""
        from opacus.optimizers import DPOptimizer

        return DPOptimizer(
            optimizer,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=self.max_grad_norm,
            expected_batch_size=max(1, round(self.sample_rate * self.n)),
            loss_reduction="mean",
        )

    # ------------------------------------------------------------------------------ steps
    @staticmethod
    def empty_batch(params: Any) -> None:
        """A Poisson batch that drew no sample: the step adds noise only (as Opacus's loader
        does with an empty batch), so every per-sample gradient list is empty."""
        for p in params:
            if p.requires_grad:
                p.grad_sample = p.new_zeros((0, *p.shape))

    def stepped(self) -> None:
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)

    @property
    def steps(self) -> int:
        return sum(n for _, _, n in self.accountant.history)

    def epsilon(self) -> float:
        """ε spent so far (0 before the first step), for this run's δ."""
        steps = self.steps
        if steps == 0:
            return 0.0
        if self._epsilon_at is None or self._epsilon_at[0] != steps:
            self._epsilon_at = (steps, float(self.accountant.get_epsilon(self.delta)))
        return self._epsilon_at[1]

    def ledger(self) -> dict[str, Any]:
        """What summary.json and the model card record: ε and what it was computed from."""
        epsilon = self.epsilon()
        return {
            "mechanism": "dp-sgd (opacus)",
            "epsilon": epsilon if math.isfinite(epsilon) else None,
            "delta": self.delta,
            "accountant": self.knobs.accountant,
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "max_grad_norm": self.max_grad_norm,
            "target_epsilon": self.target_epsilon,
            "poisson": bool(self.knobs.poisson),
            "training_samples": self.n,
            "not_covered": NOT_COVERED,
        }

    # ------------------------------------------------------------------------ checkpoints
    def save(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dnnexp_privacy"] = {
            "history": [[float(s), float(q), int(n)] for s, q, n in self.accountant.history],
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
        }

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """The accountant's history of a resumed run (before `plan`, which checks that σ and q
        are the ones it trained with)."""
        state = checkpoint.get("dnnexp_privacy")
        if state is None:
            raise RunError(
                "privacy=dp: the checkpoint holds no privacy ledger (it trained without"
                " privacy=dp): resume it with the overrides it was trained with"
            )
        self.accountant.history = [(float(s), float(q), int(n)) for s, q, n in state["history"]]
        self._resumed = (float(state["noise_multiplier"]), float(state["sample_rate"]))
        self._epsilon_at = None


def _accountant(name: str) -> Any:
    from opacus.accountants import PRVAccountant, RDPAccountant

    return {"prv": PRVAccountant, "rdp": RDPAccountant}[name]()

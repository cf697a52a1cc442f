"""Check that the devices a config asks for exist here, before the run dir or the config tree.

Lightning finds out only inside `Trainer(...)`, after dnnexp has printed the config, and says so
in an 86-line traceback. Here it is one line. torch is imported only where the config asks for
an accelerator or several devices (`trainer.accelerator=auto` with `devices=auto` needs nothing).
"""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig, ListConfig

from dnnexp.config.errors import ConfigError

GPU = ("gpu", "cuda")


def requested_devices(devices: Any) -> int | None:
    """How many devices `trainer.devices` asks for; None for 'auto' or -1 (all there are)."""
    if isinstance(devices, (list, ListConfig)):
        return len(devices)
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > 0:
        return devices
    return None


def check_devices(trainer: DictConfig) -> None:
    """ConfigError naming the key when the accelerator or device count is not available."""
    accelerator, devices = trainer.accelerator, trainer.devices
    count = requested_devices(devices)
    if accelerator == "auto" and (count is None or count == 1):
        return
    if accelerator == "cpu":
        if isinstance(devices, (list, ListConfig)):
            raise ConfigError(
                f"trainer.devices={list(devices)}: on the CPU, devices is a number of processes"
                f" (e.g. trainer.devices={len(devices)}), not a list of ids"
            )
        return
    import torch

    if accelerator == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(
                "trainer.accelerator=mps: no Apple GPU (MPS) is available to torch here;"
                " use trainer=cpu or trainer.accelerator=auto"
            )
        return
    gpus = torch.cuda.device_count()
    if accelerator == "auto" and gpus == 0:
        return  # Lightning runs `count` CPU processes
    if gpus == 0:
        hint = (
            "trainer.accelerator=cpu (DDP on the CPU: trainer=ddp trainer.accelerator=cpu"
            " trainer.devices=2)"
            if trainer.strategy.startswith("ddp")
            else "trainer=cpu"
        )
        raise ConfigError(
            f"trainer.accelerator={accelerator}: no GPU is visible to torch here; use {hint}"
            " or trainer.accelerator=auto"
        )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
    if count is not None and count > gpus:
        shown = list(devices) if isinstance(devices, (list, ListConfig)) else devices
        raise ConfigError(
            f"trainer.devices={shown}: {gpus} GPU{'s' if gpus > 1 else ''} visible to torch"
            f" here{where}; use trainer.devices={gpus} or fewer (or trainer.devices=auto)"
        )
    if isinstance(devices, (list, ListConfig)):
        missing = [i for i in devices if not 0 <= int(i) < gpus]
        if missing:
            raise ConfigError(
                f"trainer.devices={list(devices)}: no GPU {missing[0]} here; the visible GPUs"
                f" are 0..{gpus - 1}{where}"
            )

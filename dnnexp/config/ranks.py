"""Which process of a distributed job this is, when torchrun or SLURM's srun started it.

Lightning starts DDP ranks itself by re-running the command (`dnnexp/training/ddp.py` points the
children at rank 0's run dir). torchrun and srun instead start every rank at once, each its own
`dnnexp train`, and Lightning, detecting them, starts nothing. Each rank would then claim its
own `outputs/<date>/<time>[-N]`: here rank 0 claims the run dir and the other ranks use the same
one, so the job has one run dir and one summary.json.
- torchrun: rank 0 publishes the dir in torchrun's own key-value store (the TCPStore its agent
  hosts at MASTER_ADDR:MASTER_PORT, which the process group joins later); the others wait for it.
- srun: the dir gets the SLURM job and step ids, `<dir>-slurm<job>.<step>`, the same on every rank
  without any exchange (and unique per job step).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta

STORE_TIMEOUT = timedelta(minutes=5)  # how long ranks > 0 wait for rank 0 to claim the dir


def torchrun_rank() -> int | None:
    """The global rank under torchrun (torchelastic), else None."""
    needed = ("RANK", "GROUP_RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "TORCHELASTIC_RUN_ID")
    return int(os.environ["RANK"]) if all(k in os.environ for k in needed) else None


def slurm_rank() -> int | None:
    """The task's rank under `srun` with several tasks (as Lightning detects SLURM), else None."""
    if int(os.environ.get("SLURM_NTASKS", "1")) <= 1 or "SLURM_PROCID" not in os.environ:
        return None
    if os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return None  # an interactive allocation: Lightning launches the ranks itself
    return int(os.environ["SLURM_PROCID"])


def external_rank() -> int | None:
    """This process's global rank when a launcher (torchrun, srun) started every rank."""
    rank = torchrun_rank()
    return rank if rank is not None else slurm_rank()


def secondary_rank() -> int | None:
    """The rank of a DDP process other than rank 0, whoever started it, else None: it runs in
    rank 0's run dir, writes no .hydra/ there and refuses nothing rank 0 refuses."""
    rank = external_rank()
    if rank is None:
        rank = int(os.environ.get("LOCAL_RANK", "0"))  # started by Lightning
    return rank or None


_claims = 0  # run dirs claimed by this process so far: the key of each in the store


def shared_dir(path: str, claim: Callable[[str], str]) -> str:
    """The run dir of this job: `claim(path)` on rank 0 (or in a plain process), rank 0's claim
    on the other ranks."""
    global _claims
    if torchrun_rank() is not None:
        _claims += 1
        return _through_torchrun_store(path, claim, f"dnnexp/run_dir/{_claims}")
    if slurm_rank() is not None:
        step = os.environ.get("SLURM_STEP_ID", "0")
        shared = f"{path}-slurm{os.environ.get('SLURM_JOB_ID', '0')}.{step}"
        os.makedirs(shared, exist_ok=True)  # whichever rank comes first makes it
        return shared
    return claim(path)


def _through_torchrun_store(path: str, claim: Callable[[str], str], key: str) -> str:
    from dnnexp.config.errors import RunError

    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        raise RunError(
            "torchrun without its agent's store: give every rank the same run dir with"
            " hydra.run.dir=DIR"
        )
    from torch.distributed import TCPStore

    store = TCPStore(
        host_name=os.environ["MASTER_ADDR"],
        port=int(os.environ["MASTER_PORT"]),
        is_master=False,
        timeout=STORE_TIMEOUT,
    )
    if torchrun_rank() == 0:
        claimed = claim(path)
        store.set(key, claimed)
        return claimed
    return store.get(key).decode()

"""dnnexp's search sweeper as a Hydra plugin (`hydra/sweeper: dnnexp_search`).

Hydra imports every module under `hydra_plugins/` when it starts, so this one imports nothing
heavy: the search itself (and Optuna) load in `dnnexp.search.sweeper` when a search runs.
"""

# no `from __future__ import annotations`: Hydra loads this module without registering it in
# sys.modules, and dataclasses then cannot resolve string annotations
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper


@dataclass
class DnnexpSearchSweeperConf:
    _target_: str = "hydra_plugins.dnnexp_search.search_sweeper.DnnexpSearchSweeper"
    params: Optional[dict[str, str]] = field(default_factory=dict)  # the search space


ConfigStore.instance().store(
    group="hydra/sweeper", name="dnnexp_search", node=DnnexpSearchSweeperConf, provider="dnnexp"
)


class DnnexpSearchSweeper(Sweeper):
    def __init__(self, params: Optional[dict[str, str]] = None) -> None:
        from dnnexp.search.sweeper import SearchLoop

        self.loop = SearchLoop(params)

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.loop.setup(hydra_context, task_function, config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.loop.sweep(arguments)

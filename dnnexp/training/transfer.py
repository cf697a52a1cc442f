"""Transfer learning: start a run from an earlier run's weights (`init_from`).

Tensors are matched by name and shape. The output layer (the head) is re-initialized whenever
the classes differ (their number or their names: digits 0-4 -> 5-9 has the same shape but
other meanings), and anything else that does not match keeps its fresh initialization. The
loaded tensors are the backbone: `optimizer.backbone_lr_ratio` scales their learning rate and
`freeze=backbone` keeps them fixed (for `freeze_epochs`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from dnnexp.config.errors import RunError


def head_name(model: nn.Module) -> str:
    """The last module that holds parameters of its own: every family's output layer."""
    last = ""
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            last = name
    return last


def read_source(path: str, input_shape: list[int]) -> dict[str, Any]:
    """The checkpoint of `init_from=path`, loaded safely; RunError (one line) for a file that
    is missing, corrupt, unsafe or not dnnexp's, or one built for other inputs."""
    from dnnexp.models.weights import load_run_weights

    ckpt = load_run_weights("init_from", path)
    shape = list(ckpt["hyper_parameters"]["input_shape"])
    if shape != list(input_shape):
        raise RunError(
            f"init_from={path} was trained on inputs {shape}; this run has {list(input_shape)}:"
            " its layers cannot be reused"
        )
    return ckpt


def load_pretrained(
    ckpt: dict[str, Any], path: str, model: nn.Module, classes: list[str] | None
) -> tuple[list[str], str]:
    """Copy the matching tensors of `ckpt` (read from `init_from=path`) into `model`; (the
    names of the loaded parameters, one line that says what was loaded and what is new)."""
    hparams: dict[str, Any] = ckpt["hyper_parameters"]
    prefix = "model."
    source = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    target = model.state_dict()
    head = head_name(model)
    their_classes = hparams.get("classes")
    new_head = their_classes != classes or hparams.get("num_outputs") != _outputs(model, head)
    loaded, new = {}, []
    for name, tensor in target.items():
        mine_head = name.startswith(head + ".")
        if name in source and source[name].shape == tensor.shape and not (mine_head and new_head):
            loaded[name] = source[name]
        else:
            new.append(name)
    parameters = {name for name, _ in model.named_parameters()}
    if not parameters & set(loaded):  # (a batch-norm step count alone matches anything)
        raise RunError(
            f"init_from={path} ({hparams['config']['model']['name']}) shares no layer of the same"
            " name and shape with this model: use the same model family and widths"
        )
    model.load_state_dict(loaded, strict=False)
    layers = sorted({n.rsplit(".", 1)[0] for n in loaded if n in parameters})
    fresh = sorted({n.rsplit(".", 1)[0] for n in new if n in parameters})
    why = f" (classes {_shown(their_classes)} -> {_shown(classes)})" if new_head else ""
    line = (
        f"init_from={path}: loaded {len(loaded)} tensors of layers {', '.join(layers)};"
        f" new: {', '.join(fresh) or 'none'}{why if head in fresh else ''}"
    )
    return [n for n in loaded if n in parameters], line


def _outputs(model: nn.Module, head: str) -> int | None:
    weight = getattr(model.get_submodule(head), "weight", None) if head else None
    return None if weight is None else int(weight.shape[0])


def _shown(classes: list[str] | None) -> str:
    if classes is None:
        return "?"
    return ",".join(classes) if len(classes) <= 12 else f"{len(classes)} classes"

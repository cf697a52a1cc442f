"""Building blocks shared by the model families: activations, norms and weight init."""

from __future__ import annotations

from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}
# Nonlinearities whose gain torch's kaiming init knows; the others are initialised as relu.
_KAIMING_GAINS = ("relu", "leaky_relu", "tanh", "sigmoid")
_LEAKY_SLOPE = 0.01  # nn.LeakyReLU's default negative slope


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


def make_norm(kind: str, num_features: int, groups: int, dims: int) -> nn.Module:
    """A norm over features of (N, F) inputs (dims=1) or channels of (N, C, H, W) (dims=2)."""
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 or 2, got {dims}")
    if kind == "batch":
        return nn.BatchNorm1d(num_features) if dims == 1 else nn.BatchNorm2d(num_features)
    if kind == "group":
        return nn.GroupNorm(groups, num_features)
    if kind == "layer":
        return nn.LayerNorm(num_features) if dims == 1 else nn.GroupNorm(1, num_features)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of batch, group, layer, none")


def init_weights(module: nn.Module, scheme: str, activation: str) -> None:
    """Init every Linear/Conv weight of `module` by `scheme` and zero their biases.

    Norm layers keep their ones/zeros and recurrent cells keep torch's init; "default" changes
    nothing.
    """
    if scheme == "default":
        return
    if scheme not in ("kaiming", "xavier"):
        raise ValueError(f"unknown init {scheme!r}; choose one of kaiming, xavier, default")
    nonlinearity = activation if activation in _KAIMING_GAINS else "relu"
    for layer in module.modules():
        if not isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            continue
        if scheme == "kaiming":
            nn.init.kaiming_normal_(
                layer.weight, a=_LEAKY_SLOPE, mode="fan_in", nonlinearity=nonlinearity
            )
        else:
            nn.init.xavier_normal_(layer.weight)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)

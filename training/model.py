"""The Residual Attention UNet (RA-UNet) of Hosen & Islam, and its ablation variants.

Read top to bottom: the blocks (``ResidualBlock``, ``AttentionGate``, ``Down``, ``Up``), then the
network, configured by one dataclass. ``unet``, ``attention-unet`` and ``ra-unet`` share the
code and differ only in two switches (residual blocks, attention gates), as in the paper's
Table II ablation; they are built by name from one registry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """Shape of the network. The paper's RA-UNet: width 64, depth 5 (64...1024 channels)."""

    model: str = "ra-unet"
    width: int = 64
    depth: int = 5
    in_channels: int = 3
    out_channels: int = 3
    residual: bool = True
    attention: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


class ConvBlock(nn.Module):
    """Two 3x3 convolutions with ReLU; with ``residual``, the input joins the output through a
    1x1 convolution (the paper's residual block)."""

    def __init__(self, cin: int, cout: int, residual: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout))
        self.skip = nn.Conv2d(cin, cout, 1) if residual else None
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.skip is not None:
            y = y + self.skip(x)
        return self.act(y)


class AttentionGate(nn.Module):
    """Additive attention (Oktay et al.), computed at the coarser scale: the decoder's gating
    signal ``g`` (half the resolution of the skip ``x``) decides which parts of ``x`` pass."""

    def __init__(self, x_ch: int, g_ch: int, inter: int) -> None:
        super().__init__()
        self.gating = nn.Sequential(nn.Conv2d(g_ch, inter, 1), nn.BatchNorm2d(inter),
                                    nn.ReLU(inplace=True))
        self.theta = nn.Conv2d(x_ch, inter, 2, stride=2)  # the skip, brought to g's scale
        self.phi = nn.Conv2d(inter, inter, 1)
        self.psi = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(inter, 1, 1), nn.Sigmoid())
        self.out = nn.Sequential(nn.Conv2d(x_ch, x_ch, 1), nn.BatchNorm2d(x_ch))

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        a = self.psi(self.theta(x) + self.phi(self.gating(g)))
        a = nn.functional.interpolate(a, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.out(x * a)


class Down(nn.Module):
    """Max-pool, then a block."""

    def __init__(self, cin: int, cout: int, residual: bool) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.block = ConvBlock(cin, cout, residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.pool(x))


class Up(nn.Module):
    """Upsample the coarser features 2x, gate the skip with them (optional), concatenate both,
    block. As in the paper's Keras model, upsampling has no weights and the block sees
    3 x ``cout`` channels (2 x from below, 1 x from the skip)."""

    def __init__(self, cin: int, cout: int, residual: bool, attention: bool) -> None:
        super().__init__()
        self.gate = AttentionGate(cout, cin, cout) if attention else None
        self.block = ConvBlock(cin + cout, cout, residual)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.gate is not None:
            skip = self.gate(skip, x)
        x = nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.block(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """Encoder-decoder with skips; sigmoid RGB output in [0, 1]."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = [cfg.width * 2**i for i in range(cfg.depth)]
        self.stem = ConvBlock(cfg.in_channels, ch[0], cfg.residual)
        self.downs = nn.ModuleList(Down(ch[i], ch[i + 1], cfg.residual)
                                   for i in range(cfg.depth - 1))
        self.ups = nn.ModuleList(Up(ch[i + 1], ch[i], cfg.residual, cfg.attention)
                                 for i in reversed(range(cfg.depth - 1)))
        self.head = nn.Conv2d(ch[0], cfg.out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.ups:
            y = up(y, skips.pop())
        return torch.sigmoid(self.head(y))


# The paper's ablation (Table II): one network, two switches.
VARIANTS = {
    "unet": {"residual": False, "attention": False},
    "attention-unet": {"residual": False, "attention": True},
    "ra-unet": {"residual": True, "attention": True},
}


def build_model(name: str = "ra-unet", width: int = 64, depth: int = 5) -> UNet:
    """A model variant by name (see ``VARIANTS``)."""
    if name not in VARIANTS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(VARIANTS)}")
    if depth < 2 or width < 1:
        raise ValueError(f"depth must be >= 2 and width >= 1, got {depth}, {width}")
    return UNet(UNetConfig(model=name, width=width, depth=depth, **VARIANTS[name]))


def model_from_config(cfg: dict) -> UNet:
    """Rebuild a model from the config a checkpoint stores."""
    return UNet(UNetConfig(**cfg))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

"""The Residual Attention UNet (RA-UNet) of Hosen & Islam, and its ablation variants.

Read top to bottom: the blocks (``ResidualBlock``, ``AttentionGate``, ``Down``, ``Up``), then the
network, configured by one dataclass. ``unet``, ``attention-unet`` and ``ra-unet`` share the
code and differ only in two switches (residual blocks, attention gates), as in the paper's
Table II ablation; they are built by name from one registry.

The default layout is the paper's code: no BatchNorm in the conv blocks (``norm="batch"`` puts
one after every conv, shortcut included), an attention gate whose gating path has a 3x3
stride-1 transposed convolution and whose coefficients are upsampled nearest, a BatchNorm after
the gate and after the 1x1 head. With it the parameter counts are the paper's (Table II and its
depth study; ``tests/test_model.py``). Checkpoints written before this layout say
``layout="maskface-0.1"`` (or nothing) and rebuild as they were trained.

With ``mask_head`` the head has a fourth channel: the network's own estimate of where the mask
is, so compositing and ``unmask`` can keep every pixel outside it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import torch
from torch import nn

from .registry import NORMS, VARIANTS

LAYOUTS = ("paper", "maskface-0.1")


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
    norm: str = "none"  # "none": the paper's RA-UNet code; "batch": BatchNorm after every conv
    layout: str = "paper"  # "maskface-0.1": the gate and head of checkpoints made before
    mask_head: bool = False  # a fourth output channel: where the mask is
    # Learnt to paint a face into a mask erased to flat grey (``--erase-fraction``): such a
    # model restores in two passes (training/refill.py), not one.
    refill: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def _norm(channels: int, on: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if on else nn.Identity()


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with ReLU; with ``residual``, the input joins the output through a
    1x1 convolution before the last ReLU (the paper's residual block)."""

    def __init__(self, cin: int, cout: int, residual: bool, norm: bool,
                 shortcut_norm: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1), _norm(cout, norm), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1), _norm(cout, norm))
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1), _norm(cout, shortcut_norm))
                     if residual else None)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.skip is not None:
            y = y + self.skip(x)
        return self.act(y)


class AttentionGate(nn.Module):
    """Additive attention (Oktay et al.), computed at the coarser scale: the decoder's gating
    signal ``g`` (half the resolution of the skip ``x``) decides which parts of ``x`` pass.

    As in the paper's code: ``g`` passes a 1x1 conv (the gating signal), a 1x1 conv and a 3x3
    transposed conv of stride 1; the skip a 2x2 stride-2 conv; their sum a ReLU, a 1x1 conv to
    one channel and a sigmoid, upsampled nearest; the gated skip a 1x1 conv and a BatchNorm.
    """

    def __init__(self, x_ch: int, g_ch: int, inter: int, norm: bool, paper: bool) -> None:
        super().__init__()
        self.gating = nn.Sequential(nn.Conv2d(g_ch, inter, 1), _norm(inter, norm),
                                    nn.ReLU(inplace=True))
        self.theta = nn.Conv2d(x_ch, inter, 2, stride=2)  # the skip, brought to g's scale
        phi = [nn.Conv2d(inter, inter, 1)]
        if paper:
            phi.append(nn.ConvTranspose2d(inter, inter, 3, stride=1, padding=1))
        self.phi = nn.Sequential(*phi)
        self.psi = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(inter, 1, 1), nn.Sigmoid())
        self.upsample = "nearest" if paper else "bilinear"
        self.out = nn.Sequential(nn.Conv2d(x_ch, x_ch, 1), nn.BatchNorm2d(x_ch))

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        a = self.psi(self.theta(x) + self.phi(self.gating(g)))
        if self.upsample == "nearest":
            a = nn.functional.interpolate(a, size=x.shape[-2:], mode="nearest")
        else:
            a = nn.functional.interpolate(a, size=x.shape[-2:], mode="bilinear",
                                          align_corners=False)
        return self.out(x * a)


class Down(nn.Module):
    """Max-pool, then a block."""

    def __init__(self, cin: int, cout: int, cfg: UNetConfig) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.block = _block(cin, cout, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.pool(x))


class Up(nn.Module):
    """Upsample the coarser features 2x, gate the skip with them (optional), concatenate both,
    block. As in the paper's Keras model, upsampling has no weights and the block sees
    3 x ``cout`` channels (2 x from below, 1 x from the skip)."""

    def __init__(self, cin: int, cout: int, cfg: UNetConfig) -> None:
        super().__init__()
        self.gate = (AttentionGate(cout, cin, cout, cfg.norm == "batch", cfg.layout == "paper")
                     if cfg.attention else None)
        self.block = _block(cin + cout, cout, cfg)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.gate is not None:
            skip = self.gate(skip, x)
        x = nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.block(torch.cat([skip, x], dim=1))


def _block(cin: int, cout: int, cfg: UNetConfig) -> ResidualBlock:
    norm = cfg.norm == "batch"
    # The paper's code normalises the shortcut with the body; maskface 0.1 did not.
    return ResidualBlock(cin, cout, cfg.residual, norm, norm and cfg.layout == "paper")


class RAUNet(nn.Module):
    """Encoder-decoder with skips; sigmoid output in [0, 1]: RGB, then the mask estimate when
    ``cfg.mask_head``. The ablation variants are this class with switches off."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        if cfg.norm not in NORMS or cfg.layout not in LAYOUTS:
            raise ValueError(f"norm must be one of {NORMS} and layout one of {LAYOUTS}, got "
                             f"{cfg.norm!r}, {cfg.layout!r}")
        self.cfg = cfg
        ch = [cfg.width * 2**i for i in range(cfg.depth)]
        self.stem = _block(cfg.in_channels, ch[0], cfg)
        self.downs = nn.ModuleList(Down(ch[i], ch[i + 1], cfg) for i in range(cfg.depth - 1))
        self.ups = nn.ModuleList(Up(ch[i + 1], ch[i], cfg) for i in reversed(range(cfg.depth - 1)))
        outs = cfg.out_channels + int(cfg.mask_head)
        head: list[nn.Module] = [nn.Conv2d(ch[0], outs, 1)]
        if cfg.layout == "paper":
            head.append(nn.BatchNorm2d(outs))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.ups:
            y = up(y, skips.pop())
        return torch.sigmoid(self.head(y))


def build_model(name: str = "ra-unet", width: int = 64, depth: int = 5, norm: str = "none",
                mask_head: bool = False, refill: bool = False) -> RAUNet:
    """A model variant by name (see ``VARIANTS``), in the paper's layout."""
    if name not in VARIANTS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(VARIANTS)}")
    if depth < 2 or width < 1:
        raise ValueError(f"depth must be >= 2 and width >= 1, got {depth}, {width}")
    return RAUNet(UNetConfig(model=name, width=width, depth=depth, norm=norm,
                             mask_head=mask_head, refill=refill, **VARIANTS[name]))


def config_from_dict(cfg: dict) -> UNetConfig:
    """The config a checkpoint stores. Checkpoints from before the paper's layout store no
    ``layout`` and had BatchNorm after every conv: they rebuild as they were trained."""
    known = {f.name for f in fields(UNetConfig)}
    unknown = set(cfg) - known
    if unknown:
        raise ValueError(f"unknown model config keys {sorted(unknown)} (a newer maskface?)")
    if "layout" not in cfg:
        cfg = cfg | {"layout": "maskface-0.1", "norm": "batch"}
    return UNetConfig(**cfg)


def model_from_config(cfg: dict) -> RAUNet:
    """Rebuild a model from the config a checkpoint stores."""
    return RAUNet(config_from_dict(cfg))


def training_bytes(cfg: UNetConfig, side: int, batch: int) -> int:
    """A rough upper estimate of the memory one training process needs: the parameters four
    times (weights, gradients, Adam's two moments) and the activations kept for the backward
    pass, about 40 float32 feature maps of each level's size per image (encoder block, gate,
    concatenation, decoder block), 60 with BatchNorm. For refusing runs that cannot fit, not
    for planning close to the limit."""
    # Counted on a width-1 copy and scaled (convolutions grow with width squared, the rest
    # slower, so this errs high): building the real one could itself exhaust the memory.
    params = sum(p.numel() for p in RAUNet(replace(cfg, width=1)).parameters()) * cfg.width**2
    maps = 60 if cfg.norm == "batch" else 40
    acts = sum(maps * cfg.width * 2**i * (side // 2**i) ** 2 for i in range(cfg.depth))
    return 4 * (4 * params + batch * acts)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (what the paper's Table II counts, BatchNorm statistics aside)."""
    return sum(p.numel() for p in model.parameters())

"""The "For You" Heavy Ranker: double-norm-log featurization, MaskNet backbone, one tower per head.

Built from the `model:` section of the published config. With `recap_local_prod.yaml` it has
48,115,108 trainable parameters (FACTS.md). Heads are keyed by their label name
(`recap.engagement.is_*`); labels are looked up by that name, never by position.
"""

from __future__ import annotations

import torch
from torch import nn

from studylib.ranker.config import BackboneConfig, DoubleNormLogConfig, MaskBlockConfig, MaskNetConfig, MlpConfig, ModelConfig
from studylib.schema import EMBEDDING_GROUPS, GROUP_WIDTHS, short_name


def _init_linear(layer: nn.Linear) -> nn.Linear:
    # Xavier-uniform weights and zero biases, as in the original.
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class Mlp(nn.Module):
    """Linear -> [BatchNorm] -> ReLU -> [Dropout] per hidden layer, then the last Linear and, with
    final_layer_activation, a ReLU alone (as the original: no BatchNorm or Dropout after it)."""

    def __init__(self, in_features: int, cfg: MlpConfig):
        super().__init__()
        layers: list[nn.Module] = []
        *hidden, last = cfg.layer_sizes
        for width in hidden:
            layers.append(_init_linear(nn.Linear(in_features, width)))
            if cfg.batch_norm is not None:
                layers.append(nn.BatchNorm1d(width, affine=cfg.batch_norm.affine, momentum=cfg.batch_norm.momentum))
            layers.append(nn.ReLU())
            if cfg.dropout is not None and cfg.dropout.rate > 0:
                layers.append(nn.Dropout(cfg.dropout.rate))
            in_features = width
        layers.append(_init_linear(nn.Linear(in_features, last)))
        if cfg.final_layer_activation:
            layers.append(nn.ReLU())
        in_features = last
        self.layers = nn.Sequential(*layers)
        self.out_features = in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MaskBlock(nn.Module):
    """LayerNorm(W_h · (x ⊙ W₂·ReLU(W₁·m))): an instance-guided mask m gates x (arXiv 2102.07619)."""

    def __init__(self, in_features: int, mask_in_features: int, cfg: MaskBlockConfig):
        super().__init__()
        aggregation = cfg.aggregation_size or int(mask_in_features * cfg.reduction_factor)
        self.input_norm = nn.LayerNorm(in_features) if cfg.input_layer_norm else nn.Identity()
        self.mask = nn.Sequential(
            _init_linear(nn.Linear(mask_in_features, aggregation)),
            nn.ReLU(),
            _init_linear(nn.Linear(aggregation, in_features)),
        )
        self.hidden = _init_linear(nn.Linear(in_features, cfg.output_size))
        self.output_norm = nn.LayerNorm(cfg.output_size)

    def forward(self, x: torch.Tensor, mask_input: torch.Tensor) -> torch.Tensor:
        return self.output_norm(self.hidden(self.mask(mask_input) * self.input_norm(x)))


class MaskNet(nn.Module):
    """Parallel (blocks side by side, concatenated) or serial (stacked) MaskNet, then an MLP."""

    def __init__(self, in_features: int, cfg: MaskNetConfig):
        super().__init__()
        self.parallel = cfg.use_parallel
        blocks, width = [], in_features
        for block_cfg in cfg.mask_blocks:
            blocks.append(MaskBlock(in_features if self.parallel else width, in_features, block_cfg))
            width = block_cfg.output_size
        self.blocks = nn.ModuleList(blocks)
        width = sum(b.output_size for b in cfg.mask_blocks) if self.parallel else width
        self.mlp = Mlp(width, cfg.mlp) if cfg.mlp is not None else None
        self.out_features = self.mlp.out_features if self.mlp is not None else width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.parallel:
            net = torch.cat([block(x, x) for block in self.blocks], dim=1)
        else:
            net = x
            for block in self.blocks:
                net = block(net, x)
        return self.mlp(net) if self.mlp is not None else net


def build_backbone(in_features: int, cfg: BackboneConfig) -> nn.Module:
    if cfg.mask_net_config is not None:
        return MaskNet(in_features, cfg.mask_net_config)
    return Mlp(in_features, cfg.mlp_config)


class DoubleNormLog(nn.Module):
    """continuous → non-finite to 0 → sign·log1p|x| → BatchNorm → clamp; concat binary → LayerNorm.

    Each TwHIN embedding gets a LayerNorm of its own; the result is their concatenation.
    """

    def __init__(self, widths: dict[str, int], cfg: DoubleNormLogConfig):
        super().__init__()
        self.clip = cfg.clip_magnitude
        self.batch_norm = nn.BatchNorm1d(widths["continuous"], affine=cfg.batch_norm_config.affine,
                                         momentum=cfg.batch_norm_config.momentum)
        dense = widths["continuous"] + widths["binary"]
        # The config refuses center != scale, as the original does (torch has one switch for both).
        norm = cfg.layer_norm_config
        self.layer_norm = nn.LayerNorm(dense, eps=norm.epsilon, elementwise_affine=norm.scale)
        self.embedding_norms = nn.ModuleDict({g: nn.LayerNorm(widths[g]) for g in EMBEDDING_GROUPS})
        self.out_features = dense + sum(widths[g] for g in EMBEDDING_GROUPS)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        cont = torch.nan_to_num(batch["continuous"], nan=0.0, posinf=0.0, neginf=0.0)
        cont = torch.sign(cont) * torch.log1p(cont.abs())
        cont = self.batch_norm(cont).clamp(-self.clip, self.clip)
        dense = self.layer_norm(torch.cat([cont, batch["binary"].to(cont.dtype)], dim=1))
        embeddings = [self.embedding_norms[g](batch[g]) for g in EMBEDDING_GROUPS]
        return torch.cat([dense, *embeddings], dim=1)


def calibrate(prob: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """Undo negative downsampling: p·r / (1 − p + r·p), r = neg_rate / pos_rate."""
    return prob * ratio / (1.0 - prob + ratio * prob)


class HeavyRanker(nn.Module):
    def __init__(self, cfg: ModelConfig, widths: dict[str, int] | None = None):
        super().__init__()
        widths = dict(GROUP_WIDTHS if widths is None else widths)
        self.heads = tuple(cfg.tasks)
        self.featurize = DoubleNormLog(widths, cfg.featurization_config.double_norm_log_config)
        self.backbone = build_backbone(self.featurize.out_features, cfg.backbone)
        # Module names cannot hold dots, so towers are keyed by the label's short name.
        self.towers = nn.ModuleDict(
            {short_name(name): Mlp(self.backbone.out_features, task.mlp_config) for name, task in cfg.tasks.items()}
        )
        for name, tower in self.towers.items():
            if tower.out_features != 1:
                raise ValueError(f"tower {name} must end in one unit, not {tower.out_features}")
        # neg/pos downsampling ratio per head; 1 means the data were not downsampled.
        self.register_buffer("calibration_ratio", torch.ones(len(self.heads)))
        self.register_buffer("pos_weight", torch.tensor([cfg.tasks[h].pos_weight for h in self.heads]))

    def set_downsampling(self, rates: dict[str, dict[str, float]]) -> None:
        """rates: head -> {pos_downsampling_rate, neg_downsampling_rate} (heads not named stay at 1)."""
        ratio = torch.ones(len(self.heads))
        for i, head in enumerate(self.heads):
            if head in rates:
                ratio[i] = rates[head]["neg_downsampling_rate"] / rates[head]["pos_downsampling_rate"]
        self.calibration_ratio.copy_(ratio)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Returns logits, probabilities and calibrated probabilities, each [batch, heads]."""
        shared = self.backbone(self.featurize(batch))
        logits = torch.cat([self.towers[short_name(h)](shared) for h in self.heads], dim=1)
        prob = torch.sigmoid(logits.float())
        return {"logits": logits, "probabilities": prob, "calibrated": calibrate(prob, self.calibration_ratio)}


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def parameter_breakdown(model: HeavyRanker) -> dict[str, int]:
    return {
        "featurization": count_parameters(model.featurize.batch_norm) + count_parameters(model.featurize.layer_norm),
        "twhin_layer_norms": count_parameters(model.featurize.embedding_norms),
        "backbone": count_parameters(model.backbone),
        "towers": count_parameters(model.towers),
        "total": count_parameters(model),
    }


def forward_flops(model: HeavyRanker) -> int:
    """Multiply-adds ×2 of every Linear layer per example (norms and activations are <0.1%)."""
    macs = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))
    return 2 * macs


def linear_shapes(model: HeavyRanker) -> list[tuple[int, int]]:
    """(in, out) of every Linear layer, in forward order; used to measure the machine's GEMM rate."""
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]


__all__ = ["HeavyRanker", "MaskNet", "MaskBlock", "Mlp", "DoubleNormLog", "calibrate", "count_parameters",
           "parameter_breakdown", "forward_flops", "linear_shapes"]

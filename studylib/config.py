"""Read the published Heavy Ranker configuration (`recap_local_prod.yaml` format).

The file is parsed strictly: every key is either understood or refused with one line that
names the file and the key's full path, so a typo never silently changes an experiment.
Options the original supports but this study does not implement (DCN, DLRM, large
embeddings, position debiasing, ...) are accepted only when null.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path


from studylib import yamlio
from studylib.errors import StudyError

PUBLISHED_CONFIG = "recap_local_prod.yaml"
STUDY_CONFIG = "study_quick.yaml"


def shipped_config_path(name: str = PUBLISHED_CONFIG) -> Path:
    """Path of a config shipped inside the package (`studylib/configs/`)."""
    return Path(str(resources.files("studylib") / "configs" / name))


def _in_range(value: float, valid: str) -> bool:
    """`value` within `valid`: a bound (">= 1", "> 0") or an interval ("[0, 1)", "(0, 1)")."""
    if valid[0] in "[(":
        low, high = (float(x) for x in valid[1:-1].split(","))
        above = value >= low if valid[0] == "[" else value > low
        below = value <= high if valid[-1] == "]" else value < high
        return above and below
    op, bound = valid.split()
    return value >= float(bound) if op == ">=" else value > float(bound)


class _Section:
    """A mapping read key by key; `done()` refuses whatever was not read."""

    def __init__(self, raw, path: str, source: str):
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise StudyError(f"{source}: {path or 'top level'} must be a mapping, got {type(raw).__name__}")
        self.raw, self.path, self.source = dict(raw), path, source
        self.seen: set[str] = set()

    def _where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, kind=None, default=None, required: bool = False, valid: str | None = None):
        """`valid`: the allowed range as text, checked for numbers: ">= 1", "> 0", "[0, 1)", "(0, 1)"."""
        self.seen.add(key)
        if key not in self.raw or self.raw[key] is None:
            if required:
                raise StudyError(f"{self.source}: missing key {self._where(key)}")
            return default
        value = self.raw[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is not None and not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
            raise StudyError(
                f"{self.source}: {self._where(key)} must be {getattr(kind, '__name__', kind)}, got {value!r}"
            )
        if valid is not None and not _in_range(value, valid):
            raise StudyError(f"{self.source}: {self._where(key)} must be {valid}, got {value!r}")
        return value

    def section(self, key: str, required: bool = False) -> "_Section | None":
        self.seen.add(key)
        if self.raw.get(key) is None:
            if required:
                raise StudyError(f"{self.source}: missing key {self._where(key)}")
            return None
        return _Section(self.raw[key], self._where(key), self.source)

    def unsupported(self, *keys: str) -> None:
        for key in keys:
            self.seen.add(key)
            if self.raw.get(key) is not None:
                raise StudyError(f"{self.source}: {self._where(key)} is not supported by this study (must be null)")

    def ignore(self, *keys: str) -> None:
        self.seen.update(keys)

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self.seen)
        if unknown:
            raise StudyError(f"{self.source}: unknown key {self._where(unknown[0])}")


# ---------------------------------------------------------------- model section


@dataclass(frozen=True)
class BatchNormConfig:
    affine: bool
    momentum: float


@dataclass(frozen=True)
class MlpConfig:
    layer_sizes: tuple[int, ...]
    batch_norm: BatchNormConfig | None = None
    dropout: float | None = None
    final_layer_activation: bool = False


@dataclass(frozen=True)
class MaskBlockConfig:
    output_size: int
    aggregation_size: int | None = None
    reduction_factor: float | None = None
    input_layer_norm: bool = False


@dataclass(frozen=True)
class MaskNetConfig:
    mask_blocks: tuple[MaskBlockConfig, ...]
    mlp: MlpConfig | None
    use_parallel: bool


@dataclass(frozen=True)
class BackboneConfig:
    """Either a MaskNet or a plain MLP (the two backbones the study implements)."""

    mask_net: MaskNetConfig | None = None
    mlp: MlpConfig | None = None
    pos_weight: float = 1.0


@dataclass(frozen=True)
class FeaturizationConfig:
    batch_norm: BatchNormConfig
    clip_magnitude: float
    layer_norm_epsilon: float
    layer_norm_center: bool
    layer_norm_scale: bool
    feature_names_to_concat: tuple[str, ...]


@dataclass(frozen=True)
class ModelConfig:
    featurization: FeaturizationConfig
    backbone: BackboneConfig
    tasks: dict[str, BackboneConfig]  # head name -> tower (an MLP) and pos_weight


def _batch_norm(sec: _Section | None) -> BatchNormConfig | None:
    if sec is None:
        return None
    cfg = BatchNormConfig(affine=sec.get("affine", bool, True), momentum=sec.get("momentum", float, 0.1, valid="[0, 1]"))
    sec.done()
    return cfg


def _mlp(sec: _Section) -> MlpConfig:
    dropout_sec = sec.section("dropout")
    dropout = None
    if dropout_sec is not None:
        dropout = dropout_sec.get("rate", float, required=True, valid="[0, 1)")
        dropout_sec.done()
    sizes = sec.get("layer_sizes", list, required=True)
    if not sizes or not all(isinstance(s, int) and s > 0 for s in sizes):
        raise StudyError(f"{sec.source}: {sec.path}.layer_sizes must be a list of positive integers")
    cfg = MlpConfig(
        layer_sizes=tuple(sizes),
        batch_norm=_batch_norm(sec.section("batch_norm")),
        dropout=dropout,
        final_layer_activation=sec.get("final_layer_activation", bool, False),
    )
    sec.done()
    return cfg


def _mask_net(sec: _Section) -> MaskNetConfig:
    blocks = []
    raw_blocks = sec.get("mask_blocks", list, required=True)
    for i, raw in enumerate(raw_blocks):
        b = _Section(raw, f"{sec.path}.mask_blocks[{i}]", sec.source)
        block = MaskBlockConfig(
            output_size=b.get("output_size", int, required=True, valid=">= 1"),
            aggregation_size=b.get("aggregation_size", int, valid=">= 1"),
            reduction_factor=b.get("reduction_factor", float, valid="> 0"),
            input_layer_norm=b.get("input_layer_norm", bool, False),
        )
        if (block.aggregation_size is None) == (block.reduction_factor is None):
            raise StudyError(f"{sec.source}: {b.path} needs exactly one of aggregation_size, reduction_factor")
        b.done()
        blocks.append(block)
    mlp_sec = sec.section("mlp")
    cfg = MaskNetConfig(
        mask_blocks=tuple(blocks),
        mlp=_mlp(mlp_sec) if mlp_sec is not None else None,
        use_parallel=sec.get("use_parallel", bool, False),
    )
    sec.done()
    return cfg


def _backbone(sec: _Section) -> BackboneConfig:
    sec.unsupported("affine_map", "dcn_config", "dlrm_config")
    mask_sec, mlp_sec = sec.section("mask_net_config"), sec.section("mlp_config")
    if (mask_sec is None) == (mlp_sec is None):
        raise StudyError(f"{sec.source}: {sec.path} needs exactly one of mask_net_config, mlp_config")
    cfg = BackboneConfig(
        mask_net=_mask_net(mask_sec) if mask_sec is not None else None,
        mlp=_mlp(mlp_sec) if mlp_sec is not None else None,
        pos_weight=sec.get("pos_weight", float, 1.0, valid="> 0"),
    )
    sec.done()
    return cfg


def _featurization(sec: _Section) -> FeaturizationConfig:
    sec.unsupported("clip_log1p_abs_config", "log1p_abs_config", "z_score_log_config")
    dnl = sec.section("double_norm_log_config", required=True)
    ln = dnl.section("layer_norm_config", required=True)
    if ln.get("axis", int, -1) != -1:
        raise StudyError(f"{sec.source}: {ln.path}.axis must be -1")
    cfg = FeaturizationConfig(
        batch_norm=_batch_norm(dnl.section("batch_norm_config", required=True)),
        clip_magnitude=dnl.get("clip_magnitude", float, required=True, valid="> 0"),
        layer_norm_epsilon=ln.get("epsilon", float, 1e-3, valid=">= 0"),  # the original's default
        layer_norm_center=ln.get("center", bool, True),
        layer_norm_scale=ln.get("scale", bool, True),
        feature_names_to_concat=tuple(sec.get("feature_names_to_concat", list, ["binary"])),
    )
    ln.done()
    if cfg.layer_norm_center != cfg.layer_norm_scale:  # refused by the original too: torch has one switch
        raise StudyError(f"{sec.source}: {ln.path}.center and .scale must be equal (got {cfg.layer_norm_center} "
                         f"and {cfg.layer_norm_scale}); torch's LayerNorm learns both or neither")
    dnl.done()
    sec.done()
    if cfg.feature_names_to_concat != ("binary",):
        raise StudyError(f"{sec.source}: {sec.path}.feature_names_to_concat supports only [binary]")
    return cfg


def parse_model(raw, source: str, path: str = "model") -> ModelConfig:
    sec = _Section(raw, path, source)
    sec.unsupported("large_embeddings", "position_debias_config", "small_embeddings", "stratifiers")
    if sec.get("multi_task_type", str, "share_all") != "share_all":
        raise StudyError(f"{source}: {path}.multi_task_type supports only share_all")
    tasks_sec = sec.section("tasks", required=True)
    tasks = {}
    for name in tasks_sec.raw:
        task_sec = tasks_sec.section(name)
        tasks[name] = _backbone(task_sec)
        if tasks[name].mlp is None:
            raise StudyError(f"{source}: {task_sec.path} must be an mlp_config tower")
    tasks_sec.done()
    cfg = ModelConfig(
        featurization=_featurization(sec.section("featurization_config", required=True)),
        backbone=_backbone(sec.section("backbone", required=True)),
        tasks=tasks,
    )
    sec.done()
    return cfg


# ---------------------------------------------------------------- data sections


@dataclass(frozen=True)
class DataConfig:
    renamed_features: dict[str, str]  # group name -> stored column name
    labels: tuple[str, ...]
    continuous_truncation: int
    binary_truncation: int
    global_batch_size: int


def _task_data(tasks: _Section, label: str) -> None:
    """One label of train_data.tasks: the original's pos/neg_downsampling_rate (default 1).

    The original turns rates below 1 into per-example loss weights (label / pos_rate +
    (1 - label) / neg_rate). This study trains unweighted and calibrates from the rates that a
    downsampled data set records in its own manifest (`studylib generate --downsample`), so a
    rate other than 1 here is refused rather than silently dropped."""
    task = tasks.section(label)
    if task is None:  # `label:` (null): the defaults
        return
    for field in ("pos_downsampling_rate", "neg_downsampling_rate"):
        rate = task.get(field, float, 1.0, valid="(0, 1]")
        if rate != 1.0:
            raise StudyError(f"{task.source}: {task.path}.{field} is {rate:g}: per-example loss weights from "
                             "config rates are not supported; generate the data set with --downsample (its "
                             "manifest carries the rates the calibration uses) and leave the rate at 1")
    task.done()


def parse_data(raw, source: str, path: str = "train_data") -> DataConfig:
    sec = _Section(raw, path, source)
    sec.ignore("inputs", "dataset_service_compression", "evaluation_tasks")
    schema = sec.section("seg_dense_schema", required=True)
    schema.ignore("schema_path")
    renamed = schema.get("renamed_features", dict, required=True)
    schema.done()
    tasks = sec.get("tasks", dict, required=True)
    tasks_sec = sec.section("tasks", required=True)
    for label in tasks:
        _task_data(tasks_sec, label)
    tasks_sec.done()
    pre = sec.section("preprocess", required=True)
    trunc = pre.section("truncate_and_slice", required=True)
    cfg = DataConfig(
        renamed_features=dict(renamed),
        labels=tuple(tasks),
        continuous_truncation=trunc.get("continuous_feature_truncation", int, required=True, valid=">= 1"),
        binary_truncation=trunc.get("binary_feature_truncation", int, required=True, valid=">= 1"),
        global_batch_size=sec.get("global_batch_size", int, 128, valid=">= 1"),
    )
    trunc.done()
    pre.done()
    sec.done()
    return cfg


# ---------------------------------------------------------------- optimizer section

SCHEDULE_KINDS = ("constant", "piecewise_constant", "linear_ramp_to_constant", "linear_ramp_to_cosine")
_SCHEDULE_FIELDS = {
    "constant": {},
    "piecewise_constant": {"learning_rate_boundaries": list, "learning_rate_values": list},
    "linear_ramp_to_constant": {"learning_rate": float, "num_ramp_steps": int},
    "linear_ramp_to_cosine": {  # the cosine runs from num_ramp_steps to the absolute step final_num_steps
        "learning_rate": float,
        "num_ramp_steps": int,
        "final_learning_rate": float,
        "final_num_steps": int,
    },
}


@dataclass(frozen=True)
class ScheduleConfig:
    kind: str
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class OptimizerConfig:
    beta_1: float
    beta_2: float
    epsilon: float
    backbone: ScheduleConfig
    towers: dict[str, ScheduleConfig]


def _schedule(sec: _Section) -> ScheduleConfig:
    chosen = [k for k in SCHEDULE_KINDS if sec.raw.get(k) is not None]
    sec.ignore(*SCHEDULE_KINDS)
    sec.done()
    if len(chosen) != 1:
        raise StudyError(f"{sec.source}: {sec.path} needs exactly one of {', '.join(SCHEDULE_KINDS)}")
    kind = chosen[0]
    if kind == "constant":
        value = sec.raw[kind]
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise StudyError(f"{sec.source}: {sec.path}.constant must be a number")
        return ScheduleConfig(kind, {"learning_rate": float(value)})
    body = _Section(sec.raw[kind], f"{sec.path}.{kind}", sec.source)
    params = {name: body.get(name, kind_, required=True, valid=">= 0" if kind_ in (int, float) else None)
              for name, kind_ in _SCHEDULE_FIELDS[kind].items()}
    body.done()
    if kind == "piecewise_constant" and len(params["learning_rate_values"]) != len(params["learning_rate_boundaries"]) + 1:
        raise StudyError(f"{sec.source}: {body.path} needs one more value than boundaries")
    if kind.startswith("linear_ramp") and params["num_ramp_steps"] < 0:
        raise StudyError(f"{sec.source}: {body.path}.num_ramp_steps must be >= 0")
    if kind == "linear_ramp_to_cosine" and params["final_num_steps"] <= params["num_ramp_steps"]:
        raise StudyError(f"{sec.source}: {body.path}.final_num_steps must be > num_ramp_steps "
                         f"({params['final_num_steps']} <= {params['num_ramp_steps']})")
    return ScheduleConfig(kind, params)


def parse_optimizer(raw, source: str, heads: tuple[str, ...]) -> OptimizerConfig:
    sec = _Section(raw, "optimizer", source)
    adam = sec.section("adam", required=True)
    sec.unsupported("single_task_learning_rate")
    mt = sec.section("multi_task_learning_rates", required=True)
    towers_sec = mt.section("tower_learning_rates", required=True)
    towers = {name: _schedule(towers_sec.section(name)) for name in towers_sec.raw}
    towers_sec.done()
    missing = sorted(set(heads) - set(towers))
    extra = sorted(set(towers) - set(heads))
    if missing or extra:
        bad = (missing or extra)[0]
        raise StudyError(f"{source}: optimizer.multi_task_learning_rates.tower_learning_rates: "
                         f"{'missing' if missing else 'unknown'} head {bad}")
    cfg = OptimizerConfig(
        beta_1=adam.get("beta_1", float, 0.9, valid="[0, 1)"),
        beta_2=adam.get("beta_2", float, 0.999, valid="[0, 1)"),
        epsilon=adam.get("epsilon", float, 1e-7, valid="> 0"),
        backbone=_schedule(mt.section("backbone_learning_rate", required=True)),
        towers=towers,
    )
    adam.done()
    mt.done()
    sec.done()
    return cfg


# ---------------------------------------------------------------- whole file


@dataclass(frozen=True)
class TrainingConfig:
    num_train_steps: int
    checkpoint_every_n: int
    train_log_every_n: int
    num_eval_steps: int


@dataclass(frozen=True)
class RecapConfig:
    source: str
    model: ModelConfig
    data: DataConfig
    optimizer: OptimizerConfig
    training: TrainingConfig
    raw: dict  # the file as loaded, for provenance

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(self.model.tasks)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    raw = yamlio.read(path, "config")
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: top level must be a mapping")
    return raw


def load_config(path: str | Path | None = None) -> RecapConfig:
    """Parse a recap config; `None` means the published file shipped with the package."""
    path = Path(path) if path is not None else shipped_config_path()
    raw = load_yaml(path)
    source = path.name
    top = _Section(raw, "", source)
    top.ignore("validation_data", "runtime")
    train = top.section("training", required=True)
    train.ignore("save_dir", "eval_timeout_in_s", "eval_log_every_n", "num_epochs")
    training = TrainingConfig(
        num_train_steps=train.get("num_train_steps", int, 1000, valid=">= 1"),
        checkpoint_every_n=train.get("checkpoint_every_n", int, 100, valid=">= 1"),
        train_log_every_n=train.get("train_log_every_n", int, 10, valid=">= 1"),
        num_eval_steps=train.get("num_eval_steps", int, 100, valid=">= 1"),
    )
    train.done()
    model = parse_model(raw.get("model"), source)
    top.seen.add("model")
    data = parse_data(raw.get("train_data"), source)
    top.seen.add("train_data")
    unknown_heads = sorted(set(model.tasks) - set(data.labels))
    if unknown_heads:
        raise StudyError(f"{source}: model.tasks.{unknown_heads[0]} is not a label in train_data.tasks")
    optimizer = parse_optimizer(raw.get("optimizer"), source, tuple(model.tasks))
    top.seen.add("optimizer")
    top.done()
    return RecapConfig(source=str(path), model=model, data=data, optimizer=optimizer,
                       training=training, raw=copy.deepcopy(raw))

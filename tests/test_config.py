"""Strict config parsing and the four learning-rate schedules."""

import math

import pytest

from studylib.ranker.config import PUBLISHED_CONFIG, LearningRate, load_config
from studylib.strict import shipped_config_path
from studylib.errors import StudyError
from studylib.ranker.train import learning_rate


def write_variant(tmp_path, old, new):
    text = shipped_config_path(PUBLISHED_CONFIG).read_text()
    assert old in text
    path = tmp_path / "variant.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_unknown_key_is_refused_with_its_path(tmp_path):
    path = write_variant(tmp_path, "      use_parallel: true", "      use_parallel: true\n      use_paralel: true")
    with pytest.raises(StudyError, match=r"variant.yaml: unknown key model.backbone.mask_net_config.use_paralel"):
        load_config(path)


def test_wrong_type_is_refused(tmp_path):
    path = write_variant(tmp_path, "aggregation_size: 1024", "aggregation_size: large")
    with pytest.raises(StudyError, match=r"mask_blocks\[0\].aggregation_size must be int"):
        load_config(path)


def test_unsupported_option_is_refused(tmp_path):
    path = write_variant(tmp_path, "    dcn_config: null", "    dcn_config: {layers: 2}")
    with pytest.raises(StudyError, match="model.backbone.dcn_config is not supported"):
        load_config(path)


def test_missing_tower_learning_rate_is_refused(tmp_path):
    path = write_variant(tmp_path, "      recap.engagement.is_video_playback_50:\n        constant: null",
                         "      recap.engagement.is_video_playback_51:\n        constant: null")
    with pytest.raises(StudyError, match="is_video_playback_50"):
        load_config(path)


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(StudyError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    with pytest.raises(StudyError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")


def test_published_learning_rates():
    cfg = load_config()
    adam = cfg.optimizer.adam
    assert adam.beta_1 == 0.95 and adam.beta_2 == 0.999 and adam.epsilon == 1e-7
    fav = cfg.optimizer.multi_task_learning_rates.tower_learning_rates["recap.engagement.is_favorited"]
    assert fav.kind == "linear_ramp_to_constant"
    assert (fav.linear_ramp_to_constant.learning_rate, fav.linear_ramp_to_constant.num_ramp_steps) == (0.0008, 5000)


def test_linear_ramp_to_constant():
    s = LearningRate(linear_ramp_to_constant={"learning_rate": 1e-3, "num_ramp_steps": 1000})
    assert learning_rate(s, 0) == 0.0
    assert learning_rate(s, 250) == pytest.approx(2.5e-4)
    assert learning_rate(s, 1000) == 1e-3 and learning_rate(s, 10**6) == 1e-3


def test_constant_and_piecewise_constant():
    assert learning_rate(LearningRate(constant=0.3), 12345) == 0.3
    s = LearningRate(piecewise_constant={"learning_rate_boundaries": [10, 20], "learning_rate_values": [1.0, 0.5, 0.1]})
    assert [learning_rate(s, k) for k in (0, 9, 10, 19, 20, 99)] == [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]


def test_linear_ramp_to_cosine_ends_at_the_absolute_final_step():
    """As the original: the cosine runs from num_ramp_steps to step final_num_steps (not for that many steps)."""
    s = LearningRate(linear_ramp_to_cosine={"learning_rate": 1.0, "num_ramp_steps": 10,
                                            "final_learning_rate": 0.1, "final_num_steps": 110})
    assert learning_rate(s, 5) == pytest.approx(0.5)
    assert learning_rate(s, 10) == pytest.approx(1.0)
    assert learning_rate(s, 60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert learning_rate(s, 110) == pytest.approx(0.1) and learning_rate(s, 500) == pytest.approx(0.1)


def test_cosine_schedule_parses_with_the_original_fields(tmp_path):
    block = """    backbone_learning_rate:
      constant: null
      linear_ramp_to_constant:
        learning_rate: 0.0001
        num_ramp_steps: 1000
      linear_ramp_to_cosine: null
      piecewise_constant: null"""
    cosine = """    backbone_learning_rate:
      linear_ramp_to_cosine:
        learning_rate: 0.001
        final_learning_rate: 0.0001
        num_ramp_steps: 100
        final_num_steps: {end}"""
    cfg = load_config(write_variant(tmp_path, block, cosine.format(end=300)))
    assert learning_rate(cfg.optimizer.multi_task_learning_rates.backbone_learning_rate, 200) == pytest.approx(0.00055)
    assert learning_rate(cfg.optimizer.multi_task_learning_rates.backbone_learning_rate, 300) == pytest.approx(0.0001)
    with pytest.raises(StudyError, match=r"backbone_learning_rate.linear_ramp_to_cosine.final_num_steps must be > "
                                         r"num_ramp_steps \(100 <= 100\)"):
        load_config(write_variant(tmp_path, block, cosine.format(end=100)))


def test_layer_norm_defaults_and_refusals_match_the_original(tmp_path):
    ln = """      layer_norm_config:
        axis: -1
        center: true
        epsilon: 0.0
        scale: true"""
    cfg = load_config(write_variant(tmp_path, ln, ln.replace("        epsilon: 0.0\n", "")))
    assert cfg.model.featurization_config.double_norm_log_config.layer_norm_config.epsilon == 1e-3  # the original's default
    with pytest.raises(StudyError, match=r"layer_norm_config.center and .scale must be equal \(got True and False\)"):
        load_config(write_variant(tmp_path, ln, ln.replace("scale: true", "scale: false")))


def test_final_layer_activation_adds_a_relu_alone(tmp_path):
    """With final_layer_activation the original appends only a ReLU after the last Linear."""
    from torch import nn

    from studylib.ranker.model import Mlp

    tower = load_config().model.tasks["recap.engagement.is_favorited"].mlp_config  # BatchNorm and no final activation
    plain = Mlp(16, tower)
    assert isinstance(plain.layers[-1], nn.Linear)
    activated = Mlp(16, tower.model_copy(update={"final_layer_activation": True}))
    assert [type(m) for m in activated.layers] == [type(m) for m in plain.layers] + [nn.ReLU]


def test_schedule_kinds_parse_from_yaml(tmp_path):
    path = write_variant(tmp_path, """    backbone_learning_rate:
      constant: null
      linear_ramp_to_constant:
        learning_rate: 0.0001
        num_ramp_steps: 1000
      linear_ramp_to_cosine: null
      piecewise_constant: null""", """    backbone_learning_rate:
      piecewise_constant:
        learning_rate_boundaries: [100]
        learning_rate_values: [0.001, 0.0001]""")
    cfg = load_config(path)
    assert learning_rate(cfg.optimizer.multi_task_learning_rates.backbone_learning_rate, 150) == 0.0001


def test_duplicate_yaml_keys_are_refused_in_weights_configs_and_profiles(tmp_path):
    from studylib.study.pipeline import load_profile
    from studylib.ranker.weights import load_weights

    weights = tmp_path / "w.yaml"
    weights.write_text("scored_tweets_model_weight_report: -369.0\nscored_tweets_model_weight_fav: 0.5\n"
                       "scored_tweets_model_weight_report: 10.0\n")
    with pytest.raises(StudyError, match=r"w.yaml: duplicate key 'scored_tweets_model_weight_report' at line 3"):
        load_weights(str(weights))
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  tasks: {}\n  tasks: {}\n")
    with pytest.raises(StudyError, match=r"c.yaml: duplicate key 'tasks' at line 3"):
        load_config(config)
    (tmp_path / "p.yaml").write_text("steps: 3\nsteps: 4\n")
    with pytest.raises(StudyError, match=r"p.yaml: duplicate key 'steps' at line 2"):
        load_profile(tmp_path, "p")


def test_train_data_task_rates_are_read_not_dropped(tmp_path):
    """train_data.tasks.<label> holds the original's downsampling rates; a rate below 1 (which the
    original turns into loss weights) is refused in one line instead of being silently ignored."""
    label = '    "recap.engagement.is_favorited": {}'
    assert load_config(write_variant(tmp_path, label, label.replace("{}", "{pos_downsampling_rate: 1.0}")))
    with pytest.raises(StudyError, match=r"train_data.tasks.recap.engagement.is_favorited.neg_downsampling_rate is "
                                         r"0.01: per-example loss weights .* --downsample"):
        load_config(write_variant(tmp_path, label, label.replace("{}", "{neg_downsampling_rate: 0.01}")))
    with pytest.raises(StudyError, match=r"neg_downsampling_rate must be > 0, got 0.0"):
        load_config(write_variant(tmp_path, label, label.replace("{}", "{neg_downsampling_rate: 0.0}")))
    with pytest.raises(StudyError, match=r"unknown key train_data.tasks.recap.engagement.is_favorited.loss_weight"):
        load_config(write_variant(tmp_path, label, label.replace("{}", "{loss_weight: 2.0}")))


@pytest.mark.parametrize("old, new, message", [
    ("clip_magnitude: 5.0", "clip_magnitude: true", r"double_norm_log_config.clip_magnitude must be float, got True"),
    ("num_train_steps: 10", 'num_train_steps: "10"', r"training.num_train_steps must be int, got '10'"),
    ("multi_task_type: share_all", "multi_task_type: share_none",
     r"model.multi_task_type supports only 'share_all', got 'share_none'"),
    ("        layer_sizes:\n          - 2048", "        layer_sizes: []", r"mask_net_config.mlp.layer_sizes must not be empty"),
    ("          reduction_factor: null", "          reduction_factor: 0.5",
     r"mask_blocks\[0\] needs exactly one of aggregation_size, reduction_factor"),
    ("  global_batch_size: 128", "  global_batch_size: [128]", r"train_data.global_batch_size must be int, got \[128\]"),
])
def test_schema_refuses_wrong_types_without_coercion(tmp_path, old, new, message):
    """No value is coerced: a bool is not a number, a quoted number is not an int."""
    with pytest.raises(StudyError, match=r"variant.yaml: .*" + message):
        load_config(write_variant(tmp_path, old, new))


def test_null_reads_as_absent_and_every_published_value_is_kept():
    """The published file writes unused options as null; they take their defaults, and every value
    that is given arrives in the schema (a dump of the parsed config holds the file's numbers)."""
    cfg = load_config()
    assert cfg.model.backbone.dcn_config is None and cfg.model.backbone.mask_net_config.mlp.batch_norm is None
    dumped = cfg.model_dump()

    def values(node, path=()):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from values(value, (*path, key))
        elif isinstance(node, list) and node and isinstance(node[0], dict):
            for i, value in enumerate(node):
                yield from values(value, (*path, i))
        elif node is not None:
            yield path, node

    for path, value in values({k: cfg.raw[k] for k in ("model", "train_data", "optimizer", "training")}):
        if path[:2] == ("train_data", "seg_dense_schema") and path[-1] == "schema_path":
            continue
        node = dumped
        for key in path:
            node = node[key]
        assert node == (tuple(value) if isinstance(value, list) else value), path

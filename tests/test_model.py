"""The Heavy Ranker as published: size, cost, structure and outputs."""

import pytest
import torch
import yaml

from studylib.ranker.config import PUBLISHED_CONFIG, STUDY_CONFIG, load_config
from studylib.strict import shipped_config_path
from studylib.data.layout import RENAMED_FEATURES
from studylib.ranker.model import HeavyRanker, MaskNet, calibrate, forward_flops, parameter_breakdown
from studylib.schema import GROUP_WIDTHS, LABELS


@pytest.fixture(scope="module")
def published():
    return load_config(shipped_config_path(PUBLISHED_CONFIG))


@pytest.fixture(scope="module")
def model(published):
    torch.manual_seed(0)
    return HeavyRanker(published.model)


def random_batch(n=8):
    g = torch.Generator().manual_seed(0)
    batch = {k: torch.randn(n, w, generator=g) for k, w in GROUP_WIDTHS.items()}
    batch["continuous"] = batch["continuous"].exp() * 100
    batch["binary"] = (batch["binary"] > 0).float()
    return batch


def test_parameter_count_from_shipped_config_matches_published(model):
    parts = parameter_breakdown(model)
    assert parts["total"] == 48_115_108
    assert parts["featurization"] == 8_586
    assert parts["twhin_layer_norms"] == 1_200
    assert parts["backbone"] == 34_138_976 + 8_390_656  # 4 MaskBlocks + MLP
    assert parts["towers"] == 5_575_690


def test_forward_flops_match_published(model):
    assert forward_flops(model) == 2 * 48_071_936


def test_shipped_config_is_the_published_file_unchanged():
    text = shipped_config_path(PUBLISHED_CONFIG).read_text()
    assert "mask_net_config" in text and text.startswith("training:\n  num_train_steps: 10\n")


def test_study_config_keeps_the_published_model_and_data_sections():
    published = yaml.safe_load(shipped_config_path(PUBLISHED_CONFIG).read_text())
    study = yaml.safe_load(shipped_config_path(STUDY_CONFIG).read_text())
    assert study["model"] == published["model"]
    assert study["train_data"] == published["train_data"]
    assert study["optimizer"]["adam"] == published["optimizer"]["adam"]


def test_config_renames_agree_with_stored_layout(published):
    renamed = dict(published.train_data.renamed_features)
    assert renamed.pop("discrete") == "home_recap_2022_discrete__segdense_vals"  # unused by the model, not stored
    assert renamed == RENAMED_FEATURES


def test_ten_heads_are_named_labels(published, model):
    assert len(model.heads) == 10
    assert set(model.heads) <= set(LABELS)
    assert set(LABELS) - set(model.heads) == {
        "recap.engagement.is_bookmarked", "recap.engagement.is_shared", "recap.engagement.is_tweet_detail_dwelled_15_sec"}


def test_outputs_have_one_column_per_head_and_valid_probabilities(model):
    model.eval()
    out = model(random_batch())
    for key in ("logits", "probabilities", "calibrated"):
        assert out[key].shape == (8, 10)
    assert torch.allclose(out["probabilities"], torch.sigmoid(out["logits"]))
    assert torch.equal(out["calibrated"], out["probabilities"])  # no downsampling: identity


def test_nonfinite_continuous_features_are_mapped_to_zero(model):
    model.eval()
    batch = random_batch(4)
    clean = {k: v.clone() for k, v in batch.items()}
    clean["continuous"][0, :3] = 0.0
    batch["continuous"][0, 0], batch["continuous"][0, 1], batch["continuous"][0, 2] = float("nan"), float("inf"), -float("inf")
    assert torch.equal(model(batch)["logits"], model(clean)["logits"])


def test_calibration_undoes_negative_downsampling():
    # True p = 0.01; negatives kept at 5%, positives at 100%: the downsampled data show
    # p_ds = 0.01 / (0.01 + 0.99 * 0.05); calibration must give 0.01 back.
    p_ds = torch.tensor([0.01 / (0.01 + 0.99 * 0.05)])
    assert torch.allclose(calibrate(p_ds, torch.tensor(0.05 / 1.0)), torch.tensor([0.01]))


def test_set_downsampling_changes_only_that_head(published):
    model = HeavyRanker(published.model).eval()
    head = "recap.engagement.is_replied"
    model.set_downsampling({head: {"pos_downsampling_rate": 1.0, "neg_downsampling_rate": 0.005}})
    out = model(random_batch())
    i = model.heads.index(head)
    assert torch.allclose(out["calibrated"][:, i], calibrate(out["probabilities"][:, i], torch.tensor(0.005)))
    others = [j for j in range(10) if j != i]
    assert torch.equal(out["calibrated"][:, others], out["probabilities"][:, others])


def test_serial_masknet_builds_and_runs(published):
    cfg = published.model.backbone.mask_net_config
    serial = MaskNet(2776, cfg.model_copy(update={"use_parallel": False}))
    assert serial(torch.randn(3, 2776)).shape == (3, 2048)
    # serial: block 2..4 take the 1024-wide output, the mask still reads the 2776-wide input
    assert serial.blocks[1].hidden.in_features == 1024 and serial.blocks[1].mask[0].in_features == 2776

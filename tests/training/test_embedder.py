"""Fine-tuning the embedder for real (one epoch on generated products), the catalogue's embedder
check, re-embedding, and the ONNX path giving the same neighbours as torch."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from core.catalog import Product
from core.errors import ConflictError, InvalidInputError, ModelNotFoundError
from core.settings import Settings
from tests.conftest import jpeg_bytes, models_missing, product_image

pytestmark = [pytest.mark.model, pytest.mark.slow]

SHOP = {"TEA": ((20, 120, 60), "TEA", "box"), "SOAP": ((230, 200, 40), "SOAP", "ellipse"),
        "JAM": ((150, 20, 60), "JAM", "box")}


def shop_photo(colour, word, shape, seed: int) -> np.ndarray:
    """The product picture on a grey 'shelf' at some offset: a stand-in shopper photo."""
    rng = np.random.default_rng(seed)
    canvas = np.full((300, 320, 3), int(rng.integers(120, 230)), np.uint8)
    y, x = int(rng.integers(0, 60)), int(rng.integers(0, 80))
    canvas[y:y + 240, x:x + 240] = product_image(colour, word, shape, size=240)
    return canvas


def fast_settings(data) -> Settings:
    """The real embedder; no detector, background removal or OCR (not what these tests are about)."""
    return Settings(data=data, detector={"backend": "none"}, background={"enabled": False}, ocr={"enabled": False})


@pytest.fixture(scope="module")
def trained_shop(tmp_path_factory):
    """Three SKUs of five images each, indexed with ImageNet's embedder, and one epoch of training on them."""
    reason = models_missing()
    if reason:
        pytest.skip(reason)
    from pipeline.build import build_stages
    from pipeline.embedder_files import embedders_dir, next_version
    from pipeline.engine import Engine
    from training.embedder import EmbedderTrainSettings, train_embedder
    from training.embedder_data import load_catalogue, source_summary, split_holdout

    settings = fast_settings(tmp_path_factory.mktemp("shop") / "data")
    engine = Engine(settings, build_stages(settings))
    for n, (sku, look) in enumerate(SHOP.items()):
        images = [(f"{sku}-0.jpg", jpeg_bytes(product_image(*look)))]
        images += [(f"{sku}-{i}.jpg", jpeg_bytes(shop_photo(*look, seed=10 * n + i))) for i in range(1, 5)]
        engine.add_product(Product(sku, title=sku.title()), images)
    skus, items = load_catalogue(engine)
    engine.close()
    train, held = split_holdout(items, 0.25)
    folder = embedders_dir(settings.data) / f"v{next_version(settings.data)}"
    run = EmbedderTrainSettings(epochs=1, skus_per_batch=3, images_per_sku=2, holdout=0.25, holdout_by="order",
                                device="cpu", loss="multi-similarity")  # proxy-anchor has a test of its own
    trained = train_embedder(train, held, folder, settings.models, run,
                             source_summary(settings.data, skus, train, held, "order"))
    return settings, trained


def test_one_epoch_writes_a_versioned_model_with_its_card(trained_shop):
    import torch

    from features.embed_efficientnet import load_network
    from pipeline.embedder_files import load_trained, training_markdown
    from training.embedder_data import training_photos

    settings, trained = trained_shop
    card = load_trained(trained.folder).card
    assert trained.folder.name == "v1" and card["version"] == 1 and trained.name.startswith("efficientnet-lite2-ft-v1-")
    assert card["data"]["skus"] == 3 and card["data"]["train_images"] == 12 and card["data"]["held_out_images"] == 3
    metrics = card["metrics"]
    assert metrics["epochs_run"] == 1 and metrics["seconds_per_epoch"] > 0
    assert 0 <= metrics["held_out_r1"] <= 1 and metrics["history"][0]["epoch"] == 0
    trained_on, held = training_photos(trained)  # read back from the catalogue, as `skulens tune` does
    assert len(trained_on) == 12 and len(held) == 3 and not trained_on & held
    assert card["data"]["held_out_by"] == "order" and set(card["data"]["held_out_sha256"]) == held
    # a card that lists its held-out photos (a visit holdout cannot be re-derived) is taken at its word
    other = sorted(trained_on)[:3]
    listed = dataclasses.replace(trained, card={**card, "data": {**card["data"], "held_out_sha256": other}})
    assert training_photos(listed) == (trained_on - set(other) | held, set(other))
    text = training_markdown(trained)
    assert "s per epoch" in text and "| 1 |" in text and trained.name in text and "multi-similarity loss" in text
    assert "260 px inputs" in text and trained.input_size == card["settings"]["image_size"] == 260
    tuned, base = load_network(trained, settings.models).state_dict(), load_network(None, settings.models).state_dict()
    assert torch.equal(tuned["_conv_stem.weight"], base["_conv_stem.weight"])  # frozen trunk
    assert not torch.equal(tuned["_conv_head.weight"], base["_conv_head.weight"])  # trained top


def test_the_catalogue_is_reembedded_and_never_mixed(trained_shop):
    from pipeline.build import build_stages
    from pipeline.engine import Engine
    from pipeline.reembed import reembed

    settings, trained = trained_shop
    with pytest.raises(ConflictError, match="skulens reindex"):  # vectors are ImageNet's, the pipeline is not
        Engine(settings, build_stages(settings, trained=trained))
    engine = Engine(settings, build_stages(settings, trained=trained), reembedding=True)
    summary = reembed(engine)
    engine.close()
    # no detector: the box is the whole image, so one region per image
    assert summary["images"] == 15 and summary["vectors"] == 15 and summary["embedder"] == trained.name
    with pytest.raises(ConflictError, match="was embedded with efficientnet-lite2-ft-v1"):
        Engine(settings, build_stages(settings, trained=None))
    engine = Engine(settings, build_stages(settings))  # by default: the embedder the catalogue records
    try:
        assert engine.stages.embedder.name == trained.name
        result = engine.search(jpeg_bytes(shop_photo(*SHOP["SOAP"], seed=99)), k=3)
        assert result.groups[0].matches[0].sku == "SOAP"
    finally:
        engine.close()


def test_onnx_gives_the_same_neighbours_as_torch(trained_shop):
    from features.embed_efficientnet import EfficientNetLite2Embedder
    from features.embed_export import export_embedder
    from pipeline.embedder_files import calibration_images

    settings, trained = trained_shop
    calibration = calibration_images(settings, n=8)
    assert len(calibration) == 8 and all(im.ndim == 3 for im in calibration)
    fp32, int8 = export_embedder(trained, settings.models, calibration)
    assert fp32.name == "model.onnx" and int8.name == "model.int8.onnx"
    assert "static" in int8.with_suffix(".json").read_text()
    images = [shop_photo(*look, seed=s) for s in (1, 2, 3) for look in SHOP.values()]
    runs = {}
    for runtime in ("torch", "onnx", "onnx-int8"):
        emb = EfficientNetLite2Embedder(settings.embedder.model_copy(update={"runtime": runtime}), settings.models,
                                        trained)
        vectors, tags = emb.embed(images)
        assert vectors.shape == (9, 1280) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
        runs[runtime] = (emb.name, vectors, tags)
    torch_v, onnx_v = runs["torch"][1], runs["onnx"][1]
    assert np.abs(torch_v - onnx_v).max() < 1e-3
    def neighbours(v):
        sims = v @ v.T
        np.fill_diagonal(sims, -1)
        return np.argsort(-sims, axis=1)[:, :3]
    assert (neighbours(torch_v) == neighbours(onnx_v)).all()
    assert runs["torch"][2][0].labels == runs["onnx"][2][0].labels
    def auto(recorded=None):
        return EfficientNetLite2Embedder(settings.embedder, settings.models, trained, recorded=recorded)
    assert auto().runtime == "onnx-int8"  # a new catalogue on a CPU: the fastest export
    kept = auto(recorded=trained.name)  # a catalogue of float vectors keeps them: the float export
    assert kept.runtime == "onnx" and kept.name == runs["torch"][0]
    assert auto(recorded=trained.name + "-int8").runtime == "onnx-int8"
    assert auto(recorded="efficientnet-lite2-imagenet").runtime == "onnx-int8"  # another embedder's: reindex
    int8_file = trained.onnx_path(True)
    int8_file.rename(int8_file.with_suffix(".away"))
    try:
        assert auto().runtime == "onnx"
        with pytest.raises(ModelNotFoundError, match="embedder export"):  # the catalogue's int8 vectors: say how
            auto(recorded=trained.name + "-int8").embed(images[:1])
    finally:
        int8_file.with_suffix(".away").rename(int8_file)
    from core.models import sha256_file
    int8_named = trained.name + "-int8-" + sha256_file(int8)[:8]
    assert runs["onnx-int8"][0] == int8_named  # its own name: never mixed with float vectors
    int8_v = runs["onnx-int8"][1]
    assert (np.sum(int8_v * torch_v, axis=1) > 0.9).all()  # quantised, but still the same embedding
    # quantised again on other images: another model, so another name (its catalogue asks for a reindex)
    export_embedder(trained, settings.models, calibration[:4])
    again = auto(recorded=int8_named)
    assert again.runtime == "onnx-int8" and again.name.startswith(trained.name + "-int8-") and again.name != int8_named


def test_the_bench_compares_dynamic_int8_from_a_temporary_file(trained_shop):
    """`embedder bench`'s dynamic int8 row: quantised from the float export into a folder that is
    removed after the row, run under its own name, and still close to the same embedding."""
    from contextlib import ExitStack

    from evaluation.bench_embedder import DYNAMIC, _embedder
    from features.embed_efficientnet import EfficientNetLite2Embedder
    from features.embed_export import ensure_exported

    settings, trained = trained_shop
    ensure_exported(trained, settings.models)
    images = [shop_photo(*look, seed=s) for s in (4, 5) for look in SHOP.values()]
    torch_v, _ = EfficientNetLite2Embedder(settings.embedder.model_copy(update={"runtime": "torch"}), settings.models,
                                           trained).embed(images)
    with ExitStack() as stack:
        emb = _embedder(settings, trained, DYNAMIC, 4, stack)
        quantised = emb._variant
        vectors, tags = emb.embed(images)
        assert quantised.is_file()
    assert not quantised.exists()  # nothing left behind in the data directory or elsewhere
    assert emb.name == trained.name + "-int8-dynamic" and emb.runtime == "onnx"
    assert vectors.shape == (6, 1280) and len(tags) == 6
    assert (np.sum(vectors * torch_v, axis=1) > 0.6).all()  # lossier than static int8 (0.78-0.86 here)


def test_a_catalogue_moves_to_another_input_size_with_reindex(trained_shop):
    """`reindex --input-size 320`: the vectors are named for their size, searches follow the catalogue's
    size, a pipeline asking for another size is refused, and the ONNX forms at 320 px, made first
    beside the 260-px ones, give the same vectors as torch at 320 px."""
    from features.embed_efficientnet import EfficientNetLite2Embedder
    from features.embed_export import export_embedder, export_for_size
    from pipeline.build import build_stages
    from pipeline.embedder_files import calibration_images
    from pipeline.engine import Engine
    from pipeline.reembed import reembed

    settings, trained = trained_shop
    def sized(size):
        return settings.model_copy(update={"embedder": settings.embedder.model_copy(update={"input_size": size})})
    if not trained.onnx_path(True).is_file():
        export_embedder(trained, settings.models, calibration_images(settings, n=8))
    # what `reindex --input-size 320` does first: the forms it has at 260 px, made at 320 px
    made = export_for_size(trained, settings.models, "auto", 320, lambda: calibration_images(settings, n=8))
    assert [p.name for p in made] == ["model.320px.onnx", "model.320px.int8.onnx"]
    assert export_for_size(trained, settings.models, "auto", 320, list) == []  # nothing missing now
    assert json.loads(made[1].with_suffix(".json").read_text())["input_size"] == 320
    engine = Engine(sized(320), build_stages(sized(320), trained=trained), reembedding=True)
    try:
        assert engine.stages.embedder.runtime == "onnx-int8"
        made_name = reembed(engine)["embedder"]
        assert made_name.startswith(trained.name + "-320px-int8-")
    finally:
        engine.close()
    try:
        engine = Engine(settings, build_stages(settings))  # no size set: the catalogue's
        try:
            assert engine.stages.embedder.input_size == 320 and engine.stages.embedder.name == made_name
            assert engine.search(jpeg_bytes(shop_photo(*SHOP["JAM"], seed=98)), k=3).groups[0].matches[0].sku == "JAM"
        finally:
            engine.close()
        with pytest.raises(ConflictError, match="skulens reindex.*SKULENS_EMBEDDER__INPUT_SIZE=320"):
            Engine(sized(260), build_stages(sized(260)))
        assert trained.onnx_path().is_file() and trained.onnx_path(True).is_file()  # the 260-px exports stay
        images = [shop_photo(*look, seed=s) for s in (6, 7) for look in SHOP.values()]
        runs = {runtime: EfficientNetLite2Embedder(sized(320).embedder.model_copy(update={"runtime": runtime}),
                                                   settings.models, trained).embed(images)[0]
                for runtime in ("torch", "onnx")}
        assert np.abs(runs["torch"] - runs["onnx"]).max() < 1e-3
        at_260 = EfficientNetLite2Embedder(sized(260).embedder.model_copy(update={"runtime": "torch"}),
                                           settings.models, trained).embed(images)[0]
        assert np.abs(runs["torch"] - at_260).max() > 1e-3  # the size does change the vectors
    finally:  # back to float vectors at 260 px for the other tests
        back = sized(260).model_copy(update={"embedder": sized(260).embedder.model_copy(update={"runtime": "torch"})})
        engine = Engine(back, build_stages(back, trained=trained), reembedding=True)
        reembed(engine)
        engine.close()


def test_proxy_anchor_learns_a_proxy_per_sku_and_the_card_says_so(tmp_path):
    """`--loss proxy-anchor`: one learnt proxy per SKU, in the optimiser at its own (faster) rate;
    the frozen blocks stay ImageNet's, the trained ones move, and the card records the loss."""
    import torch

    from core.settings import ModelSettings
    from pipeline.embedder_files import load_trained, training_markdown
    from training.embedder import PROXY_LR_SCALE, EmbedderTrainSettings, _Trainer, train_embedder
    from training.embedder_data import TrainImage, source_summary

    reason = models_missing()
    if reason:
        pytest.skip(reason)
    with pytest.raises(InvalidInputError, match="proxy-anchor"):
        EmbedderTrainSettings(loss="triplet")
    items = [TrainImage(n, shop_photo(*look, seed=10 * n + i) if i else product_image(*look), None, i == 0, 4 * n + i)
             for n, look in enumerate(SHOP.values()) for i in range(4)]
    run = EmbedderTrainSettings(epochs=1, skus_per_batch=3, images_per_sku=2, train_from_block=19, holdout=0.0,
                                device="cpu", loss="proxy-anchor")
    trainer = _Trainer(items, ModelSettings(), run)
    proxies = trainer.loss_fn.proxies
    assert proxies.shape == (3, 1280) and trainer.miner is None
    assert trainer.optimiser.param_groups[1]["lr"] == pytest.approx(run.learning_rate * PROXY_LR_SCALE)
    before_p, frozen, trained = (proxies.detach().clone(), trainer.net._blocks[0].state_dict(),
                                 trainer.net._blocks[20].state_dict())
    frozen, trained = ({k: v.clone() for k, v in d.items()} for d in (frozen, trained))
    loss = trainer.step(list(range(6)))
    assert np.isfinite(loss)
    assert not torch.allclose(proxies.detach(), before_p)
    assert all(torch.equal(v, trainer.net._blocks[0].state_dict()[k]) for k, v in frozen.items())
    assert any(not torch.equal(v, trainer.net._blocks[20].state_dict()[k]) for k, v in trained.items())
    done = train_embedder(items, [], tmp_path / "v1", ModelSettings(), run, source_summary(tmp_path, list(SHOP), items, []))
    assert load_trained(done.folder).card["settings"]["loss"] == "proxy-anchor"
    assert "proxy-anchor loss" in training_markdown(done)

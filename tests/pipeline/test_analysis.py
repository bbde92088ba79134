"""Analyzer orchestration with small fake stages (the models are tested on their own) and real k-means."""

from __future__ import annotations

import numpy as np
import pytest

from core.results import Analysis
from core.settings import ColourSettings
from core.types import Box, Mask, OcrText, Tags
from features.colour_kmeans import KMeansColourExtractor
from pipeline.analysis import Analyzer, Stages, catalogue_regions, is_packshot, main_first

H, W = 60, 80


class FakeEmbedder:
    """A unit vector and one tag per image, both derived from the image's size and mean."""

    name, dim = "fake", 4
    input_size, runtime, trained = 260, "fake", None

    def __init__(self) -> None:
        self.calls: list[list[tuple[int, ...]]] = []

    def warmup(self) -> None:
        pass

    def embed(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[Tags]]:
        self.calls.append([im.shape for im in images])
        vecs = np.array([[im.shape[0], im.shape[1], im.mean(), 1.0] for im in images], np.float32)
        tags = [Tags((f"{im.shape[0]}x{im.shape[1]}", "thing"), [0.6543, 0.1234]) for im in images]
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True), tags


class FakeDetector:
    name, own_masks = None, False

    def __init__(self, boxes: list[Box]) -> None:
        self.boxes = boxes

    def warmup(self) -> None:
        pass

    def detect(self, image: np.ndarray) -> list[Box]:
        return list(self.boxes)


class FakeRemover:
    """Foreground = the left half of whatever it is given."""

    def __init__(self) -> None:
        self.calls = 0

    def warmup(self) -> None:
        pass

    def remove(self, image: np.ndarray) -> Mask:
        self.calls += 1
        alpha = np.zeros(image.shape[:2], np.float32)
        alpha[:, : image.shape[1] // 2] = 1.0
        return Mask(alpha)


class FakeReader:
    def warmup(self) -> None:
        pass

    def read(self, image: np.ndarray) -> OcrText:
        return OcrText(("ARLA", "milk"), [0.87654, 0.51234])


def picture() -> np.ndarray:
    image = np.full((H, W, 3), 255, np.uint8)
    image[10:40, 20:60] = (200, 20, 20)
    image[45:55, 5:15] = (30, 60, 200)
    return image


def make(boxes: list[Box], **kw) -> tuple[Analyzer, FakeEmbedder, FakeRemover]:
    embedder, remover = FakeEmbedder(), FakeRemover()
    stages = Stages(embedder, KMeansColourExtractor(ColourSettings(k=3)), FakeDetector(boxes), remover, FakeReader())
    return Analyzer(stages, **kw), embedder, remover


RED = Box(20, 10, 60, 40, 0.9, "object")
BLUE = Box(5, 45, 15, 55, 0.4, "object")


def test_regions_full_crop_masked() -> None:
    analyzer, embedder, remover = make([RED, BLUE])
    result = analyzer.analyse(picture(), ("full", "crop", "masked"))
    assert (result.width, result.height) == (W, H) and result.boxes == [RED, BLUE]
    [obj] = result.objects
    assert obj.box is RED and set(obj.vectors) == {"full", "crop", "masked"}
    assert embedder.calls == [[(H, W, 3), (30, 40, 3), (30, 40, 3)]]  # one batch for all regions
    assert remover.calls == 1
    assert obj.mask_coverage == pytest.approx(0.5)
    assert obj.tags.labels[0] == "30x40"  # tags come from the crop
    assert obj.ocr.tokens == ("ARLA", "milk")
    assert len(obj.palette) >= 1 and obj.palette.weights.sum() == pytest.approx(1.0)
    assert not np.allclose(obj.vectors["crop"], obj.vectors["masked"])  # masked half became white
    assert set(result.timings) == {"detect", "background", "colour", "ocr", "embed"}
    assert all(t >= 0 for t in result.timings.values())


def test_centre_views_of_the_photo() -> None:
    analyzer, embedder, _ = make([RED])
    [obj] = analyzer.analyse(picture(), ("full", "centre70", "centre50")).objects
    assert set(obj.vectors) == {"full", "centre70", "centre50"}
    assert embedder.calls == [[(H, W, 3), (round(H * 0.7), round(W * 0.7), 3), (H // 2, W // 2, 3)]]
    # every object searched separately: views of the whole photo say nothing about one object
    result = analyzer.analyse(picture(), ("full", "crop", "centre70"), all_objects=True)
    assert all(set(o.vectors) == {"crop"} for o in result.objects)


def test_whole_image_box_is_not_embedded_twice() -> None:
    analyzer, embedder, _ = make([Box(0, 0, W, H)])
    [obj] = analyzer.analyse(picture(), ("full", "crop")).objects
    assert set(obj.vectors) == {"full"}
    assert embedder.calls == [[(H, W, 3)]]
    assert obj.tags.labels[0] == f"{H}x{W}"


def test_crop_alone_of_a_whole_image_box_is_kept() -> None:
    analyzer, _, _ = make([Box(0, 0, W, H)])
    [obj] = analyzer.analyse(picture(), ("crop",)).objects
    assert set(obj.vectors) == {"crop"}


def test_all_objects_gives_one_object_per_box_without_full() -> None:
    analyzer, embedder, remover = make([RED, BLUE])
    result = analyzer.analyse(picture(), ("full", "crop", "masked"), all_objects=True)
    assert [o.box for o in result.objects] == [RED, BLUE]
    assert all(set(o.vectors) == {"crop", "masked"} for o in result.objects)
    assert remover.calls == 2
    only_full = analyzer.analyse(picture(), ("full",), all_objects=True)
    assert all(set(o.vectors) == {"crop"} for o in only_full.objects)


@pytest.mark.parametrize("all_objects", [False, True])
def test_no_boxes_gives_one_object_for_the_whole_image(all_objects: bool) -> None:
    analyzer, _, _ = make([])
    result = analyzer.analyse(picture(), ("full", "crop"), all_objects=all_objects)
    assert result.boxes == []
    [obj] = result.objects
    assert (obj.box.x1, obj.box.y1, obj.box.x2, obj.box.y2, obj.box.label) == (0, 0, W, H, "image")


def test_box_mask_is_used_instead_of_the_remover() -> None:
    alpha = np.ones((30, 40), np.float32)
    analyzer, _, remover = make([Box(20, 10, 60, 40, 0.9, "object", Mask(alpha))])
    result = analyzer.analyse(picture(), ("crop", "masked"))
    assert remover.calls == 0 and "background" not in result.timings
    assert result.objects[0].mask_coverage == 1.0


class SegmentingDetector(FakeDetector):
    own_masks = True  # like a YOLO segmentation model


def test_teacher_masks_replace_a_segmentation_detectors_masks() -> None:
    alpha = np.ones((30, 40), np.float32)
    embedder, remover = FakeEmbedder(), FakeRemover()
    boxes = [Box(20, 10, 60, 40, 0.9, "object", Mask(alpha))]
    stages = Stages(embedder, KMeansColourExtractor(ColourSettings(k=3)), SegmentingDetector(boxes), remover, FakeReader())
    analyzer = Analyzer(stages)
    assert analyzer.detector_masks_differ()
    assert analyzer.analyse(picture(), ("crop",)).objects[0].mask_coverage == 1.0 and remover.calls == 0
    teacher = analyzer.analyse(picture(), ("crop",), teacher_masks=True)
    assert remover.calls == 1 and teacher.objects[0].mask_coverage == 0.5  # the remover's left half


def test_teacher_masks_leave_remover_masks_alone() -> None:
    """Boxes from the background mask already carry the remover's mask: no second run."""
    alpha = np.ones((30, 40), np.float32)
    analyzer, _, remover = make([Box(20, 10, 60, 40, 0.9, "object", Mask(alpha))])
    assert not analyzer.detector_masks_differ()
    analyzer.analyse(picture(), ("crop",), teacher_masks=True)
    assert remover.calls == 0


def test_disabled_stages_are_skipped() -> None:
    analyzer, _, remover = make([RED], ocr_enabled=False, background_enabled=False)
    result = analyzer.analyse(picture(), ("crop", "masked"))
    [obj] = result.objects
    assert remover.calls == 0 and len(obj.ocr) == 0
    assert set(obj.vectors) == {"crop"}  # no mask -> no masked region
    assert set(result.timings) == {"detect", "colour", "embed"}
    bare = Analyzer(Stages(FakeEmbedder(), KMeansColourExtractor(ColourSettings())))
    assert set(bare.analyse(picture(), ("full",)).timings) == {"colour", "embed"}


def test_analysis_bytes_round_trip() -> None:
    analyzer, _, _ = make([RED, BLUE])
    before = analyzer.analyse(picture(), ("full", "crop", "masked"), all_objects=True)
    after = Analysis.from_bytes(before.to_bytes())
    assert (after.width, after.height) == (W, H)
    assert [b.to_list() + [b.score, b.label] for b in after.boxes] == [
        b.to_list() + [b.score, b.label] for b in before.boxes]
    for a, b in zip(after.objects, before.objects):
        assert a.vectors.keys() == b.vectors.keys()
        for region in a.vectors:
            assert a.vectors[region].dtype == np.float32
            np.testing.assert_array_equal(a.vectors[region], b.vectors[region])
        np.testing.assert_allclose(a.palette.colors, b.palette.colors, atol=0.01)
        np.testing.assert_allclose(a.palette.weights, b.palette.weights, atol=1e-3)
        assert a.ocr.tokens == b.ocr.tokens
        np.testing.assert_allclose(a.ocr.confidences, b.ocr.confidences, atol=1e-3)
        assert a.tags.labels == b.tags.labels
        np.testing.assert_allclose(a.tags.scores, b.tags.scores, atol=1e-4)
        assert a.mask_coverage == b.mask_coverage


@pytest.mark.parametrize("regions", [("full", "pixels"), ("side",), ()])
def test_unknown_region_raises(regions: tuple[str, ...]) -> None:
    analyzer, _, _ = make([RED])
    with pytest.raises(ValueError, match="regions"):
        analyzer.analyse(picture(), regions)


def test_packshots_are_told_from_photos_by_their_plain_border() -> None:
    rng = np.random.default_rng(0)
    packshot = np.full((200, 160, 3), 250, np.uint8)
    packshot[40:160, 30:130] = (200, 30, 30)  # a red carton on white
    touching = packshot.copy()
    touching[:, 70:90] = (20, 20, 200)  # a product reaching the top and bottom edges: still a packshot
    shelf = np.kron(rng.integers(0, 256, (10, 8, 3), dtype=np.uint8), np.ones((20, 20, 1), np.uint8))  # a busy shop
    shelf[40:160, 30:130] = (200, 30, 30)
    assert is_packshot(packshot) and is_packshot(touching) and not is_packshot(shelf)
    regions = ("full", "crop", "centre70", "centre50")
    assert catalogue_regions(packshot, regions, False) == ("full", "crop")
    assert catalogue_regions(shelf, regions, False) == regions
    assert catalogue_regions(packshot, regions, True) == regions
    assert catalogue_regions(packshot, ("full", "crop"), False) == ("full", "crop")


class SlowReader:
    """Reads in a thread of its own: records which thread, and can fail."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.threads: list[str] = []

    def warmup(self) -> None:
        pass

    def read(self, image: np.ndarray) -> OcrText:
        import threading

        self.threads.append(threading.current_thread().name)
        if self.fail:
            raise RuntimeError("reader broke")
        return OcrText(("ARLA",), [0.9])


def test_parallel_ocr_reads_beside_the_embedder_with_the_same_result() -> None:
    import threading

    reader = SlowReader()
    stages = Stages(FakeEmbedder(), KMeansColourExtractor(ColourSettings(k=3)), FakeDetector([RED]), FakeRemover(),
                    reader)
    serial = Analyzer(stages).analyse(picture(), ("full", "crop"))
    parallel = Analyzer(stages, parallel_ocr=True).analyse(picture(), ("full", "crop"))
    assert reader.threads[0] == threading.current_thread().name and reader.threads[1].startswith("skulens-ocr")
    assert parallel.objects[0].ocr.tokens == serial.objects[0].ocr.tokens == ("ARLA",)
    assert set(parallel.timings) == set(serial.timings) >= {"ocr", "embed"}
    for region in ("full", "crop"):
        assert np.array_equal(parallel.objects[0].vectors[region], serial.objects[0].vectors[region])


def test_parallel_ocr_error_reaches_the_caller() -> None:
    stages = Stages(FakeEmbedder(), KMeansColourExtractor(ColourSettings(k=3)), FakeDetector([RED]), None,
                    SlowReader(fail=True))
    with pytest.raises(RuntimeError, match="reader broke"):
        Analyzer(stages, parallel_ocr=True).analyse(picture(), ("crop",))


SLIVER = Box(0, 0, 80, 6, 0.9, "object")  # a confident strip of shelf edge
CARTON = Box(20, 8, 60, 58, 0.6, "object")  # the large product the shopper framed


def test_main_object_by_evidence_beats_a_confident_sliver() -> None:
    assert main_first([SLIVER, CARTON], W, H, "confidence") == [SLIVER, CARTON]
    assert main_first([SLIVER, CARTON], W, H, "evidence") == [CARTON, SLIVER]  # 0.6*sqrt(.42) > 0.9*sqrt(.1)
    small_doubt = Box(20, 8, 60, 58, 0.1, "object")
    assert main_first([SLIVER, small_doubt], W, H, "evidence")[0] == SLIVER  # size alone does not win
    assert main_first([], W, H, "evidence") == [] and main_first([CARTON], W, H, "evidence") == [CARTON]
    with pytest.raises(ValueError, match="main_object"):
        main_first([SLIVER, CARTON], W, H, "biggest")


def test_the_main_object_is_analysed_and_listed_first() -> None:
    analyzer, _, _ = make([SLIVER, CARTON], main_object="evidence")
    result = analyzer.analyse(picture(), ("crop",))
    assert result.boxes == [CARTON, SLIVER] and result.objects[0].box == CARTON
    analyzer, _, _ = make([SLIVER, CARTON])
    assert analyzer.analyse(picture(), ("crop",)).objects[0].box == SLIVER

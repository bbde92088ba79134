"""Settings: one object, nested sections, read only at the edges (CLI, service).

Every field can be set from the environment with the ``SKULENS_`` prefix and ``__``
between section and field, e.g. ``SKULENS_FUSION__WEIGHTS__TEXT=0.3`` or
``SKULENS_DETECTOR__WEIGHTS=/path/yolo.pt``.  ``SKULENS_DATA`` sets the data directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.types import SIGNALS


def default_model_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "skulens" / "models"


class ImageLimits(BaseModel):
    max_bytes: int = Field(30 * 1024 * 1024, description="largest accepted file, in bytes")
    max_pixels: int = Field(60_000_000, description="largest accepted width x height (refused before decoding)")
    min_side: int = Field(16, description="smallest accepted width or height, in pixels")
    max_side: int = Field(2048, ge=0, description="a decoded image larger than this on its longer side is shrunk to "
                          "it before analysis (JPEGs are decoded at a reduced scale, far faster); 0 keeps every pixel")
    formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "MPO", "HEIF")


class ModelSettings(BaseModel):
    cache_dir: Path = Field(default_factory=default_model_cache)
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'")
    threads: int = Field(0, ge=0, le=256, description="CPU threads each model may use (torch, OpenCV and every "
                         "onnxruntime session: detector, background, OCR, embedder); 0: each onnxruntime session "
                         "half the process's cores (a process analyses two images at once), torch and OpenCV their "
                         "defaults. Several `skulens worker` or `serve` processes on one machine: its cores "
                         "divided among them")


class DetectorSettings(BaseModel):
    backend: Literal["auto", "yolo", "mask", "none"] = Field(
        "auto", description="'auto': YOLO with the named or shipped weights, else boxes from the background mask"
    )
    weights: Path | None = Field(None, description="an ultralytics model file (.pt or .onnx); default: the shipped detector when present")
    confidence: float = 0.25
    iou: float = 0.5
    image_size: int | None = Field(None, ge=32, description="input size; default: the size the weights were trained at (else 640)")
    runtime: Literal["auto", "torch", "onnx"] = Field(
        "auto", description="'auto': on a CPU, the weights' ONNX export in onnxruntime when `skulens models fetch` "
        "made a current one, else torch; 'onnx' insists on the export")
    max_boxes: int = 10
    main_object: Literal["evidence", "confidence"] = Field(
        "evidence", description="which box is the shopper's product: 'evidence' ranks boxes by confidence x the "
        "square root of the share of the photo they cover (a large carton beats a confident sliver of shelf); "
        "'confidence' takes the detector's most confident")
    min_area_fraction: float = Field(0.01, description="drop boxes smaller than this share of the image")
    expand: float = Field(0.04, description="grow each box by this share of its size on every side")


class BackgroundSettings(BaseModel):
    enabled: bool = True
    model: Literal["isnet-medium", "isnet-small"] = "isnet-medium"
    threshold: float = 0.5
    at_index: bool = Field(
        False, description="true: catalogue images are masked by this model even when the detector gives masks of "
        "its own (a segmentation model), about 3-5 s an image on a 2-core CPU; false (the default: as good on G1 "
        "train) keeps the detector's masks. Query photos keep the detector's")


class ColourSettings(BaseModel):
    k: int = Field(5, ge=1, le=16)
    sample_pixels: int = Field(4000, description="masked pixels sampled for k-means")
    seed: int = 0
    scale: float = Field(25.0, description="CIELAB distance at which colour similarity falls to 1/e")


class OcrSettings(BaseModel):
    enabled: bool = True
    engine: Literal["rapidocr", "tesseract"] = Field(
        "rapidocr", description="'rapidocr': PP-OCR (scene text: cartons, labels, shelves); 'tesseract': Tesseract "
        "(document-like images: flat, dark print on a plain ground). Catalogue images keep the words they were "
        "indexed with")
    min_confidence: float = Field(0.5, description="drop words read with less confidence than this")
    min_length: int = 2
    det_side: int = Field(480, ge=32, le=2048, description="rapidocr: the object's region is scaled to this longest "
                                                          "side to find text lines")
    max_lines: int = Field(12, ge=1, le=200, description="rapidocr: at most this many text lines are read, the "
                                                         "tallest first")
    angle_classifier: bool = Field(False, description="rapidocr: turn upside-down lines with PP-OCR's angle "
                                                      "classifier before reading them")
    parallel: bool = Field(False, description="read text in a thread of its own while the object is masked, "
                                              "coloured and embedded (pays with cores to spare; on 2 cores the "
                                              "stages slow each other down more than they overlap)")
    languages: str = Field("eng", description="tesseract: its languages, e.g. 'eng+swe'")
    max_side: int = Field(1600, description="tesseract: images are scaled down to this longest side first")
    upscale_to: int = Field(1000, description="tesseract: small images are scaled up to this longest side first")
    timeout_s: float = Field(20.0, description="tesseract: the longest one image may take")


class EmbedderSettings(BaseModel):
    model: Literal["efficientnet-lite2"] = "efficientnet-lite2"
    weights: Path | None = Field(
        None, description="a fine-tuned embedder (folder made by `skulens embedder train`); default: the one the "
        "catalogue was last re-embedded with (`skulens reindex`), else ImageNet's")
    runtime: Literal["auto", "torch", "onnx", "onnx-int8"] = Field(
        "auto", description="'auto': the kind of vectors (float or int8) the catalogue holds; for a new catalogue "
        "or `skulens reindex`, the int8 export on a CPU, else the float export, else torch "
        "(`skulens embedder export [--int8]`); 'onnx-int8': the statically quantised export (its vectors need "
        "their own catalogue)")
    input_size: int | None = Field(
        None, ge=128, le=640, description="side in pixels each image (region) is letterboxed to for the network; "
        "default: the size the catalogue's vectors were made at, else 260 (what EfficientNet-Lite2 was trained at). "
        "Larger sizes show whole photos in more detail, at a cost that grows with the pixels; a catalogue "
        "made at another size asks for `skulens reindex --input-size N`")
    batch_size: int = 16
    tags_top_k: int = 5
    threads: int = Field(0, ge=0, description="the embedder's CPU threads (torch or onnxruntime); 0: `models.threads`")


class IndexSettings(BaseModel):
    kind: Literal["auto", "flat", "ivf", "ivf-sq8", "ivf-sq4", "hnsw"] = Field(
        "auto", description="'auto': exact search up to ivf_threshold vectors, IVF with 4-bit codes (ivf-sq4) "
        "beyond, re-ranked exactly; 'ivf-sq8': 8-bit codes (twice the memory); 'ivf': whole float32 vectors "
        "(8x the memory of ivf-sq4)"
    )
    ivf_threshold: int = 50_000
    nprobe: int = Field(64, ge=1, description="IVF lists a search looks in (of about 4 sqrt(vectors)): more "
                        "finds more of what exact search finds, at a cost that grows with it")
    rerank: int = Field(100, ge=1, description="the best candidates (by their codes) an ivf-sq4/sq8 search re-scores "
                        "with the exact vectors the database keeps; the others keep their codes' scores")
    hnsw_m: int = 32
    hnsw_ef_search: int = 128
    use_gpu: Literal["auto", "never"] = "auto"
    uri: str | None = Field(None, description="SKULENS_INDEX__URI: a Milvus server (http://host:19530) holding the "
                            "vectors for every process of a deployment, instead of a FAISS file in the data directory")
    collection: str = Field("skulens_vectors", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$",
                            description="the Milvus collection of this catalogue's vectors")
    milvus_index: Literal["HNSW", "IVF_SQ8", "IVF_FLAT", "FLAT"] = Field(
        "HNSW", description="Milvus's index over the collection (HNSW takes hnsw_m and hnsw_ef_search; the IVF "
        "kinds milvus_nlist lists and nprobe)")
    milvus_nlist: int = Field(1024, ge=1)
    milvus_timeout_s: float = Field(30.0, gt=0, description="how long a Milvus request may take")
    save_interval_s: float = Field(
        30.0, ge=0, description="a changed index file is written at most this often, in the background, and when "
        "the catalogue is closed (0: after every write); the database holds every vector, and an index opened "
        "after a crash catches up from it")


class Weights(BaseModel):
    """The weights a catalogue without weights of its own ranks with (ImageNet embedder, 2026-12-06;
    docs/evaluation.md).  Chosen on data no reported figure queries with: the best on the grocery set's
    G1 train photos (400 queries) among those that keep category search on Caltech-101 (its images
    5-9 of each label as queries) as good as before verification existed.  What `skulens tune` learns
    on grocery alone (colour 0.15, tags 0) lost 0.04 P@1 there: colour tells SKUs apart, not kinds."""

    embedding: float = Field(0.60, ge=0)
    colour: float = Field(0.05, ge=0)
    tags: float = Field(0.05, ge=0)
    text: float = Field(0.10, ge=0)
    verify: float = Field(0.15, ge=0)
    semantic: float = Field(0.10, ge=0, description="typed words against the products' pictures in word space "
                            "(counts only for searches with typed words; `skulens tune` leaves it as set)")

    @field_validator("verify")
    @classmethod
    def _not_all_zero(cls, v: float, info) -> float:  # noqa: ANN001 - pydantic's ValidationInfo
        if v == 0 and all(info.data.get(s, 0) == 0 for s in SIGNALS if s not in ("verify", "semantic")):
            raise ValueError("at least one fusion weight must be positive")
        return v

    def as_dict(self) -> dict[str, float]:
        return {s: float(getattr(self, s)) for s in SIGNALS}


class IngestSettings(BaseModel):
    workers: int = Field(2, ge=1, le=64, description="catalogue images analysed at once while earlier products are "
                         "written (`skulens index`, imports); 1 analyses one product at a time")
    ahead: int = Field(8, ge=1, le=1024, description="products analysed ahead of the one being written, at most")
    part_rows: int = Field(25, ge=1, le=100_000, description="manifest rows per queued part of an import "
                           "(PostgreSQL catalogues: `skulens worker` processes share an import part by part)")
    stalled_s: float = Field(30.0, ge=1, description="a worker silent this long is taken for dead, and the part "
                             "it held is queued again for another worker")
    progress_every_s: float = Field(1.0, ge=0, description="how often a job's progress is written")
    search_first_s: float = Field(
        10.0, ge=0, description="an import's next image waits up to this long while shoppers' photo searches "
        "run in the same process (then one import analysis at a time goes ahead), so searches keep their speed beside an import; 0: no waiting")


CLOSE_MATCH = 0.3
"""The fused score under which a photo search's best product is not called a close match."""


class FusionSettings(BaseModel):
    weights: Weights = Field(default_factory=Weights)
    candidates: int = Field(300, description="image neighbours FAISS returns per query region")
    text_candidates: int = Field(20, description="SKUs added from the full-text index")
    text_scale: float = Field(
        1.0, description="matched words (in units of a word unique to one SKU) at which text similarity is 1-1/e")
    merchant_tag_weight: float = 1.0
    region_pooling: Literal["max", "mean"] = Field(
        "mean", description="how the query regions' cosines with a SKU's vectors become one embedding score: "
                           "'max' (best pair) or 'mean' (each region's best match, averaged over the regions)")
    sku_images: int = Field(
        1, ge=1, description="a SKU's embedding score averages its this many best-matching images (1: the best one); "
                             "a catalogue tuned with `skulens tune --protocol G2` uses the number tuned for it")
    close_match: float = Field(CLOSE_MATCH, ge=0, le=1, description="a photo search whose best fused score is under "
                               "this says 'no close match' (chosen on G1 train: see docs/evaluation.md)")
    filter_exhaustive_limit: int = Field(
        5000, description="when a search's filters leave at most this many SKUs, every one of them is scored")
    query_regions: tuple[str, ...] = Field(("full", "crop", "centre70", "centre50"),
                                           description="regions of a query photo embedded (also 'masked')")
    index_regions: tuple[str, ...] = Field(
        ("full", "crop", "centre70", "centre50"),
        description="regions of a catalogue image embedded (also 'masked'); a catalogue indexed with other "
                    "regions asks for `skulens reindex`")
    packshot_centre_views: bool = Field(
        False, description="embed the centre views of packshots too (catalogue pictures on a plain background); "
                           "by default only photos get them")


class VerifySettings(BaseModel):
    enabled: bool = Field(True, description="check the best candidates' pictures against the query's object by "
                                            "local features (SIFT + RANSAC): the `verify` signal")
    top_k: int = Field(5, ge=0, le=50, description="this many best candidates (by the other signals) are checked")
    side: int = Field(320, ge=64, le=2048, description="regions are scaled to this longest side for keypoints")
    features: int = Field(300, ge=16, le=5000, description="SIFT keypoints kept per region")
    ratio_test: float = Field(0.8, gt=0, lt=1, description="Lowe's ratio test for a descriptor match")
    ransac_pixels: float = Field(6.0, gt=0, description="RANSAC reprojection error allowed, in pixels")
    min_inliers: int = Field(10, ge=0, description="inliers up to this count are chance: score 0")
    full_inliers: int = Field(40, ge=1, description="inliers from this count on: score 1")


class KeypointSettings(BaseModel):
    features: int = Field(1000, ge=16, description="ORB keypoints per image")
    max_side: int = Field(512, ge=64, description="images are scaled to this longest side first")
    ratio_test: float = Field(0.8, gt=0, lt=1, description="Lowe's ratio test for a descriptor match")
    ransac_pixels: float = Field(6.0, gt=0, description="RANSAC reprojection error allowed, in pixels")
    min_inliers: int = Field(40, ge=1, description="matches consistent with one transform needed for a copy")
    min_inlier_ratio: float = Field(0.3, ge=0, le=1, description="those inliers as a share of the keypoints of the image with fewer")
    max_hue_shift: float = Field(0.08, ge=0, le=0.5, description="median hue difference at the matched points (in turns) above which the pair is a colour variant")
    compare_side: int = Field(256, ge=32, description="longest side of the thumbnails laid over each other to compare pixels")
    compare_cell: int = Field(8, ge=2, description="side of a compared cell, in thumbnail pixels")
    cell_difference: float = Field(15.0, gt=0, description="mean difference (grey levels, after a colour fit) above which a cell differs")
    max_differing: float = Field(0.1, ge=0, le=1, description="share of differing cells above which two images are not copies (look-alike variants), whichever layer matched them")


class DedupSettings(BaseModel):
    phash_max_distance: int = Field(8, ge=0, le=11, description="pHash Hamming distance (of 64 bits) for a copy")
    dhash_max_distance: int = Field(16, ge=0, le=64, description="dHash distance an upright pHash match must also meet")
    visual_min_cosine: float = Field(0.97, ge=0, le=1, description="whole-image embedding cosine that alone makes a copy")
    candidate_min_cosine: float = Field(0.5, ge=0, le=1, description="embedding neighbours from here up are checked by keypoints")
    neighbours: int = Field(8, ge=1, description="embedding neighbours looked at per image")
    max_hue_distance: float = Field(0.5, ge=0, le=1, description="1 - overlap of two coloured images' hue histograms above which they are variants, not copies")
    min_chroma: float = Field(0.05, ge=0, le=1, description="share of coloured pixels below which hue is not compared")
    max_chroma_difference: float = Field(0.5, ge=0, le=1, description="coloured vs grey: a larger difference in that share is no copy")
    keypoints: KeypointSettings = Field(default_factory=KeypointSettings)


class WordsSettings(BaseModel):
    """Words and pictures in one space (WordLlama's 256-d word vectors): typed words find products by
    what their pictures show, and pictures get describing words."""

    enabled: bool = Field(True, description="embed typed words and place every product's pictures in word space "
                          "(the `semantic` signal, products found by meaning, describing words)")
    projection: bool = Field(True, description="place pictures with the map `skulens words train` learnt from "
                             "this catalogue's own pictures and texts, when there is one (else ConSE: the mix of "
                             "each picture's ImageNet classes' names)")
    mix: float = Field(0.5, ge=0, le=1, description="with a word map, the share of ConSE in where a picture "
                       "falls (0: the map alone). A map knows only the kinds of product it was learnt from: on "
                       "Caltech-101, kinds it never saw were found at P@10 0.03 by the map alone and 0.36 mixed "
                       "half and half, kinds it knew at 0.78 and 0.77 (BENCHMARKS.md, words)")
    floor: float = Field(0.35, ge=-1, lt=1, description="cosine between a search's words and a product's "
                         "pictures at which the semantic score starts above 0 (it reaches 1 at cosine 1)")
    candidates: int = Field(20, ge=0, le=1000, description="products added to a search's candidates by meaning "
                            "(those nearest its typed words, above the floor)")
    describe: int = Field(5, ge=0, le=50, description="describing words given for a picture (besides its colours)")


class ServiceSettings(BaseModel):
    host: str | None = Field(None, description="bind address; default 127.0.0.1, and 0.0.0.0 only when API keys are set")
    port: int = Field(8000, ge=1, le=65535)
    inference_threads: int = Field(2, ge=1, description="photo analyses run at once (the rest wait)")
    max_files: int = Field(20, ge=1, description="images accepted in one upload request")
    max_manifest_bytes: int = Field(5 * 1024 * 1024, description="largest CSV manifest accepted by the bulk import")
    cors_origins: tuple[str, ...] = Field((), description="origins allowed by CORS; empty: CORS off")
    max_k: int = Field(100, ge=1, description="most results one search may ask for")


def _comma_list(value: object) -> object:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class FileSettings(BaseModel):
    root: Path | None = Field(None, description="where catalogue image files are kept (images/ab/<sha256>.<ext> "
                              "under it); default the data directory; a shared folder every node mounts when "
                              "several machines serve one catalogue")


class StoreSettings(BaseModel):
    url: str | None = Field(None, description="SKULENS_STORE__URL: a PostgreSQL catalogue "
                            "(postgresql://user@host:5432/db) instead of the data directory's SQLite file")
    pool_size: int = Field(8, ge=1, le=200, description="most PostgreSQL connections a process holds")
    connect_timeout_s: float = Field(10.0, gt=0, description="how long to wait for PostgreSQL to answer at start-up")
    follow_s: float = Field(0.25, ge=0, description="how often a process on a PostgreSQL catalogue looks for "
                            "writes other processes (API replicas, workers) made, and applies them to its "
                            "in-memory view and index (0: never)")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SKULENS_", env_nested_delimiter="__", extra="ignore")

    data: Path = Field(Path("skulens-data"), description="the data directory (SQLite + FAISS files)")
    images: ImageLimits = Field(default_factory=ImageLimits)
    files: FileSettings = Field(default_factory=FileSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    background: BackgroundSettings = Field(default_factory=BackgroundSettings)
    colour: ColourSettings = Field(default_factory=ColourSettings)
    ocr: OcrSettings = Field(default_factory=OcrSettings)
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    fusion: FusionSettings = Field(default_factory=FusionSettings)
    verify: VerifySettings = Field(default_factory=VerifySettings)
    words: WordsSettings = Field(default_factory=WordsSettings)
    dedup: DedupSettings = Field(default_factory=DedupSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    api_read_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="SKULENS_API_READ_KEYS: comma-separated keys that may search")
    api_write_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="SKULENS_API_WRITE_KEYS: comma-separated keys that may change the catalogue")

    @field_validator("api_read_keys", "api_write_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        return _comma_list(value)

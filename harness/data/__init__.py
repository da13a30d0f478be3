"""Images and datasets, in the order a pair is made: images (read, write, crop to the scale), the dataset
registry, fetching and verification, the generated-LR cache, dataset layouts, and the one pair rule.

The names below are the package's interface (`from harness.data import read_image, benchmark_pairs, …`);
the modules are `images`, `registry`, `fetching`, `lr_cache`, `layouts` and `pairs`.
"""

from harness.data.fetching import MANIFESTS, VerifyReport, fetch, list_datasets, verify
from harness.data.images import (
    IMAGE_SUFFIXES,
    ImageReadError,
    crop_to_scale,
    image_files,
    read_image,
    write_image,
)
from harness.data.layouts import (
    LAYOUTS,
    SetFolders,
    benchmark_pairs,
    dataset_checksum,
    folder_pairs,
    free_folders,
    iter_benchmark_pairs,
    locate,
)
from harness.data.lr_cache import GENERATED_MARKER, is_generated
from harness.data.pairs import EMBEDDED, LRImage, Pair, embedded_pairs, lr_images
from harness.data.registry import DATASETS, Archive, DatasetSpec, PerFileSource, cache_dir, spec

__all__ = [
    "DATASETS",
    "EMBEDDED",
    "GENERATED_MARKER",
    "IMAGE_SUFFIXES",
    "LAYOUTS",
    "MANIFESTS",
    "Archive",
    "DatasetSpec",
    "ImageReadError",
    "LRImage",
    "Pair",
    "PerFileSource",
    "SetFolders",
    "VerifyReport",
    "benchmark_pairs",
    "cache_dir",
    "crop_to_scale",
    "dataset_checksum",
    "embedded_pairs",
    "fetch",
    "folder_pairs",
    "free_folders",
    "image_files",
    "is_generated",
    "iter_benchmark_pairs",
    "list_datasets",
    "locate",
    "lr_images",
    "read_image",
    "spec",
    "verify",
    "write_image",
]

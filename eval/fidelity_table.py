"""evaluate.py's FID/KID table: every image source against the real val photos, and the floor row.

* :func:`prepare_fidelity` - before any generation: the InceptionV3 (:mod:`eval.fidelity`) or ``None``
  with the one line saying why FID/KID are skipped, and every set checked against KID's subset size;
* :func:`fidelity_entry` - results.json's ``fidelity`` entry: per image set FID, KID and KID's std over
  subsets against the real val photos of its dataset at the same size; rows per method (mean ± sample
  std over its runs, :func:`experiments.study.statistics.summarize`); a floor row per dataset (as many of its real
  training photos as it has val frames, evenly spaced, against its real val photos, at the same size).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.progress import progress
from eval.eval_sets import EvalSet
from eval.fidelity import InceptionFeatures, check_kid_size, fid, find_inception_weights, kid, skip_line
from eval.markdown import markdown_table, summary_cell
from eval.segmenters.base import to_uint8
from eval.sources import ImageSource, method_order
from eval.tables import summarize

COLUMNS = (("fid", "FID"), ("kid", "KID"), ("kid_subset_std", "KID std over subsets"))


@dataclass(frozen=True)
class FidelityConfig:
    """What evaluate.py's --fid/--kid compute and with what (its options of the same names)."""
    fid: bool = False
    kid: bool = False
    inception_weights: str | None = None
    inception_cache: str | None = None
    kid_subsets: int = 100
    kid_subset_size: int = 100
    batch_size: int = 8

    @property
    def wanted(self) -> bool:
        return self.fid or self.kid


def train_photos(evalset: EvalSet) -> tuple[list[int], object]:
    """(indices, their uint8 S x S photos) of as many real training photos of ``evalset``'s dataset as it
    has val frames (all of them if fewer), evenly spaced over the training set: the floor compares sets
    of the size the generated ones have, since FID's estimate depends on the number of images."""
    from data.aligned import AlignedDataset
    dataset = AlignedDataset(evalset.dataroot, "train", direction="BtoA", load_size=evalset.size,
                             crop_size=evalset.size, flip=False, train=False)
    count = min(len(evalset), len(dataset))
    indices = sorted({int(i) for i in np.linspace(0, len(dataset) - 1, count).round()})
    return indices, (to_uint8(dataset[i]["target"]) for i in indices)


def prepare_fidelity(config: FidelityConfig, sources: list[ImageSource], evalsets: dict[Path, EvalSet], device):
    """(InceptionFeatures, where its weights came from) for ``--fid``/``--kid``, or None (not asked, or
    no weights: one line printed).
    With ``--kid`` every image set and training split must hold a KID subset (EvalError otherwise)."""
    if not config.wanted:
        return None
    weights, origin = find_inception_weights(config.inception_weights)
    if weights is None:
        print(skip_line(origin))
        return None
    if config.kid:
        for source in sources:
            what = source.images or f"{source.checkpoint} (the val images it generates)"
            check_kid_size(len(evalsets[source.dataroot.resolve()]), config.kid_subset_size, f"{what}")
        for root, evalset in evalsets.items():
            check_kid_size(len(evalset), config.kid_subset_size, f"{root} (val photos)")
            check_kid_size(len(train_photos(evalset)[0]), config.kid_subset_size, f"{root} (train photos)")
    return InceptionFeatures(weights, device, config.batch_size, config.inception_cache), origin


def distances(features, real, config: FidelityConfig) -> dict:
    """FID / KID / KID's std over subsets of ``features`` against ``real`` (only those asked for)."""
    out = {}
    if config.fid:
        out["fid"] = fid(features, real)
    if config.kid:
        out.update(kid(features, real, config.kid_subsets, config.kid_subset_size))
    return out


def fidelity_entry(extractor, origin: str, sources: list[ImageSource], evalsets: dict[Path, EvalSet],
                   config: FidelityConfig) -> dict:
    """results.json's ``fidelity``: weights, settings, per image set and per row."""
    from data.images import read_rgb
    several_roots = len(evalsets) > 1
    real, floor = {}, []
    for root, evalset in evalsets.items():
        bar = progress(total=len(evalset), desc="Inception: real val photos", unit="img")
        real[root] = extractor((evalset.real_photo(i) for i in range(len(evalset))), bar)
        bar.close()
        indices, photos = train_photos(evalset)
        bar = progress(total=len(indices), desc="Inception: real train photos", unit="img")
        train = extractor(photos, bar)
        bar.close()
        method = "Real train vs real val (floor)" + (f" ({root.name})" if several_roots else "")
        floor.append({"method": method, "dataroot": str(root), "train_photos": indices,
                      "scores": distances(train, real[root], config)})
    image_sets = []
    for source in sources:
        root = source.dataroot.resolve()
        evalset = evalsets[root]
        bar = progress(total=len(evalset), desc=f"Inception: {source.label}", unit="img")
        features = extractor((read_rgb(source.images / f"{name}.png") for name in evalset.names), bar)
        bar.close()
        image_sets.append({"label": source.label, "method": source.method, "seed": source.seed,
                           "dataroot": str(root), "scores": distances(features, real[root], config)})
    if extractor.cache is not None:
        print(f"Inception features: {extractor.cache_hits} of {2 * len(evalsets) + len(sources)} image sets read "
              f"from the cache {extractor.cache.folder}", flush=True)
    keys = [key for key, _ in COLUMNS if key in (image_sets or floor)[0]["scores"]]
    rows = []
    for method in method_order([s["method"] for s in image_sets]):
        members = [s for s in image_sets if s["method"] == method]
        rows.append({"method": method, "runs": [s["label"] for s in members],
                     **{key: summarize([s["scores"][key] for s in members]) for key in keys}})
    rows += [{"method": f["method"], "runs": [], **{key: summarize([f["scores"][key]]) for key in keys}}
             for f in floor]
    sizes = ", ".join(sorted({f"{e.size}x{e.size}" for e in evalsets.values()}))
    frames = ", ".join(f"{len(e)} val frames" for e in evalsets.values())
    kid_note = f"; KID: {config.kid_subsets} subsets of {config.kid_subset_size}" if config.kid else ""
    title = (f"FID/KID by torch-fidelity's InceptionV3 (generated vs real val photos at {sizes}; {frames}"
             f"{kid_note})")
    return {"title": title, "weights": origin, "columns": keys, "kid_subsets": config.kid_subsets,
            "kid_subset_size": config.kid_subset_size, "rows": rows, "image_sets": image_sets, "floor": floor}


def fidelity_markdown(entry: dict) -> str:
    """The FID/KID table of :func:`fidelity_entry` in Markdown: a line per method (mean ± std over its runs), the
    floor row(s), and the weights used under it."""
    names = dict(COLUMNS)
    digits = {"fid": 2, "kid": 4, "kid_subset_std": 4}
    lines = [[row["method"] + (f" ({len(row['runs'])} runs)" if len(row["runs"]) > 1 else "")]
             + [summary_cell(row[key], digits[key]) for key in entry["columns"]] for row in entry["rows"]]
    table = markdown_table(["Method", *(names[key] for key in entry["columns"])], lines, entry["title"])
    note = "KID std over subsets: a run's spread over its subsets (mean over runs)" if "kid" in entry["columns"] \
        else ""
    return "\n\n".join([table, f"InceptionV3 weights {entry['weights']}." + (f" {note}." if note else "")])

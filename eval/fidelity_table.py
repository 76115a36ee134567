"""evaluate.py's FID/KID table: every image source against the real val photos, and the floor row.

* :func:`prepare_fidelity` - before any generation: the InceptionV3 (:mod:`eval.fidelity`) or ``None``
  with the one line saying why FID/KID are skipped, and every set checked against KID's subset size;
* :func:`fidelity_entry` - results.json's ``fidelity`` entry: per image set FID, KID and KID's std over
  subsets against the real val photos of its dataset at the same size; rows per method (mean ± sample
  std over its runs, :func:`eval.statistics.summarize`); a floor row per dataset (as many of its real
  training photos as it has val frames, evenly spaced, against its real val photos, at the same size).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.progress import progress
from eval.fcn_score import EvalSet
from eval.fidelity import InceptionFeatures, check_kid_size, fid, find_inception_weights, kid, skip_line
from eval.scorers.base import to_uint8
from eval.sources import ImageSource, method_order
from eval.statistics import summarize

COLUMNS = (("fid", "FID"), ("kid", "KID"), ("kid_subset_std", "KID std over subsets"))


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


def prepare_fidelity(args, sources: list[ImageSource], evalsets: dict[Path, EvalSet], device):
    """(InceptionFeatures, where its weights came from) for ``--fid``/``--kid``, or None (not asked, or
    no weights: one line printed).
    With ``--kid`` every image set and training split must hold a KID subset (EvalError otherwise)."""
    if not (args.fid or args.kid):
        return None
    weights, origin = find_inception_weights(args.inception_weights)
    if weights is None:
        print(skip_line(origin))
        return None
    if args.kid:
        for source in sources:
            what = source.images or f"{source.checkpoint} (the val images it generates)"
            check_kid_size(len(evalsets[source.dataroot.resolve()]), args.kid_subset_size, f"{what}")
        for root, evalset in evalsets.items():
            check_kid_size(len(evalset), args.kid_subset_size, f"{root} (val photos)")
            check_kid_size(len(train_photos(evalset)[0]), args.kid_subset_size, f"{root} (train photos)")
    return InceptionFeatures(weights, device, args.batch_size, args.inception_cache), origin


def distances(features, real, args) -> dict:
    """FID / KID / KID's std over subsets of ``features`` against ``real`` (only those asked for)."""
    out = {}
    if args.fid:
        out["fid"] = fid(features, real)
    if args.kid:
        out.update(kid(features, real, args.kid_subsets, args.kid_subset_size))
    return out


def fidelity_entry(extractor, origin: str, sources: list[ImageSource], evalsets: dict[Path, EvalSet], args) -> dict:
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
                      "scores": distances(train, real[root], args)})
    image_sets = []
    for source in sources:
        root = source.dataroot.resolve()
        evalset = evalsets[root]
        bar = progress(total=len(evalset), desc=f"Inception: {source.label}", unit="img")
        features = extractor((read_rgb(source.images / f"{name}.png") for name in evalset.names), bar)
        bar.close()
        image_sets.append({"label": source.label, "method": source.method, "seed": source.seed,
                           "dataroot": str(root), "scores": distances(features, real[root], args)})
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
    kid_note = f"; KID: {args.kid_subsets} subsets of {args.kid_subset_size}" if args.kid else ""
    title = (f"FID/KID by torch-fidelity's InceptionV3 (generated vs real val photos at {sizes}; {frames}"
             f"{kid_note})")
    return {"title": title, "weights": origin, "columns": keys, "kid_subsets": args.kid_subsets,
            "kid_subset_size": args.kid_subset_size, "rows": rows, "image_sets": image_sets, "floor": floor}

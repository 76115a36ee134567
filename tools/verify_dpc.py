"""Check our DPC Xception-71 port against DeepLab's own TensorFlow graph: ``make verify-dpc``.

DeepLab's model-zoo scorer (Table 3) is a TensorFlow frozen graph. This driver builds that graph with
DeepLab's own code (tensorflow/models ``research/deeplab``, Cityscapes flags of the zoo model:
``xception_71``, the dense prediction cell of ``dense_prediction_cell_branch5_top1_cityscapes.json``,
decoder output stride 4, crop 1025x2049, 19 classes) with random weights and random batch-norm
statistics, exports it with ``export_model.py``'s own ``main`` (which freezes it), packs it as the
model-zoo tarball, imports that tarball with ``python -m eval.import_segmenter dpc_xception71`` and
compares our network with TensorFlow's on several images: the logits at the decoder's resolution, the
logits upsampled to the image, the fraction of pixels whose argmax agrees, and our ``predict`` against
the graph's ``SemanticPredictions``.

It runs in two environments. The TensorFlow side (this file run with a Python that has
``tensorflow-cpu``, ``tf-slim`` and ``tf_keras``; ``make verify-dpc`` builds one) builds, exports and
runs the graph; the PyTorch side (``compare``, run with the project's Python, no TensorFlow) imports
and compares. DeepLab's code is imported unmodified from ``--research`` (default: the copy in
``../shared/third_party/tensorflow-models/research``); what it needs to run on TensorFlow 2 is supplied
in memory while it is imported (``tensorflow`` seen as ``tensorflow.compat.v1``, the retired
``tensorflow.contrib`` modules as tf-slim stand-ins, NumPy 2's missing ``np.int``).

    make verify-dpc
    .venv-verify-dpc/bin/python tools/verify_dpc.py --output-strides 16 8 --research PATH
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# ../shared/third_party/tensorflow-models/research next to the checkout (or next to its worktree folder)
DEFAULT_RESEARCH = next((base / "shared" / "third_party" / "tensorflow-models" / "research"
                         for base in (ROOT.parent, ROOT.parent.parent)
                         if (base / "shared" / "third_party" / "tensorflow-models").is_dir()),
                        ROOT.parent / "shared" / "third_party" / "tensorflow-models" / "research")
DPC_JSON = "deeplab/core/dense_prediction_cell_branch5_top1_cityscapes.json"
TARBALL_FOLDER = "train_fine"          # the zoo tarball's folder name
IMAGE_SIZES = ((1024, 2048), (256, 256), (600, 900), (1025, 2049))
ARGMAX_TARGET = 0.9999


# ---------------------------------------------------------------------------------- test images
def make_images(seed: int = 0) -> dict[str, np.ndarray]:
    """uint8 RGB test images [H, W, 3]: smooth colour fields with rectangles and noise, like scenes."""
    rng = np.random.default_rng(seed)
    images = {}
    for h, w in IMAGE_SIZES:
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        image = np.zeros((h, w, 3), np.float32)
        for c in range(3):
            for _ in range(3):
                fy, fx, phase = rng.uniform(0.5, 6, 2).tolist() + [rng.uniform(0, 6.3)]
                image[..., c] += np.sin(2 * np.pi * (fy * y / h + fx * x / w) + phase)
        image = 127.5 + 40 * image
        for _ in range(12):
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            image[y0:y0 + rng.integers(h // 20, h // 3), x0:x0 + rng.integers(w // 20, w // 3)] = rng.uniform(0, 255, 3)
        image += rng.normal(0, 8, image.shape)
        images[f"{h}x{w}"] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return images


# ------------------------------------------------------------------------ DeepLab on TensorFlow 2
class _HParams:
    """Stand-in for ``tf.contrib.training.HParams`` (only DeepLab's NAS backbone builds one)."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


def tensorflow1_stand_ins(real_tf, tf_slim) -> dict:
    """The modules TensorFlow 1 code imports (``tensorflow`` as ``compat.v1``, ``tensorflow.contrib``), by
    their names, made of TensorFlow 2's compat layer and tf-slim."""
    tf1 = real_tf.compat.v1
    contrib = types.ModuleType("tensorflow.contrib")
    contrib.slim = tf_slim
    contrib.framework = tf_slim
    contrib.layers = tf_slim
    contrib.quantize = None            # quantised export only
    contrib.training = types.SimpleNamespace(HParams=_HParams)
    contrib_layers_layers = types.ModuleType("tensorflow.contrib.layers.python.layers")
    contrib_layers_layers.layers = sys.modules["tf_slim.layers.layers"]
    contrib_layers_layers.utils = sys.modules["tf_slim.layers.utils"]
    return {
        "tensorflow": tf1,
        "tensorflow.compat": real_tf.compat,
        "tensorflow.compat.v1": tf1,
        "tensorflow.contrib": contrib,
        "tensorflow.contrib.slim": tf_slim,
        "tensorflow.contrib.slim.nets": sys.modules["tf_slim.nets"],
        "tensorflow.contrib.layers": tf_slim,
        "tensorflow.contrib.layers.python": types.ModuleType("tensorflow.contrib.layers.python"),
        "tensorflow.contrib.layers.python.layers": contrib_layers_layers,
    }


def import_deeplab(research: Path):
    """DeepLab's ``common``, ``model`` and ``export_model`` modules, imported from ``research`` as they
    are, with TensorFlow 1 names supplied in memory while they import."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tensorflow as real_tf
    import tf_keras.src.legacy_tf_layers as legacy_tf_layers
    sys.modules["tf_keras.legacy_tf_layers"] = legacy_tf_layers   # where tf-slim looks for them
    import tf_slim
    import tf_slim.layers.layers
    import tf_slim.layers.utils
    import tf_slim.nets.resnet_utils
    from tensorflow.python.tools import freeze_graph  # noqa: F401  (imported with the real package)
    from tensorflow.python.util import deprecation
    deprecation._PRINT_DEPRECATION_WARNINGS = False   # TF1 code: hundreds of deprecation notices
    tf1 = real_tf.compat.v1
    tf1.disable_v2_behavior()
    tf1.logging.set_verbosity(tf1.logging.ERROR)
    stand_ins = tensorflow1_stand_ins(real_tf, tf_slim)
    contrib = stand_ins["tensorflow.contrib"]
    saved = {name: sys.modules.get(name) for name in stand_ins}
    had_contrib = hasattr(tf1, "contrib")
    sys.path[:0] = [str(research), str(research / "slim")]
    sys.modules.update(stand_ins)
    tf1.contrib = contrib               # export_model.py reads tf.contrib.slim
    np.int = int                        # NumPy 2 dropped it; slim's mobilenet_v3 calls it at import
    try:
        from deeplab import common, export_model, model
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        if not had_contrib:
            del tf1.contrib
        del np.int
    return tf1, common, model, export_model


def zoo_flags(research: Path, output_stride: int, checkpoint: Path, export: Path) -> list[str]:
    """The command line of ``export_model.py`` for the Cityscapes DPC Xception-71 zoo model."""
    return ["export_model.py", "--model_variant=xception_71",
            f"--dense_prediction_cell_json={research / DPC_JSON}", "--decoder_output_stride=4",
            "--crop_size=1025", "--crop_size=2049", "--num_classes=19", f"--output_stride={output_stride}",
            "--inference_scales=1.0", f"--checkpoint_path={checkpoint}", f"--export_path={export}"]


CALIBRATION_CROP = (257, 513)


def randomize(tf1, session, rng) -> None:
    """Random values for what initialisers leave constant (gammas, betas, biases) and larger random
    classifier weights, so that the logits differ from class to class and from pixel to pixel."""
    for variable in tf1.global_variables():
        name, shape = variable.op.name, variable.shape.as_list()
        if name.endswith("gamma"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("beta"):
            value = rng.normal(0, 0.2, shape)
        elif name == "logits/semantic/weights":
            value = rng.normal(0, 0.2, shape)
        elif name == "logits/semantic/biases":
            value = rng.normal(0, 0.5, shape)
        else:
            continue
        variable.load(value.astype(np.float32), session)


def calibrate_batch_norms(tf1, session, batch_norms, image_input, image, rng) -> None:
    """Random batch-norm statistics near those each layer sees on ``image``: layer by layer in graph
    order, moving mean = the mean of its input + N(0, 0.2) std, moving variance = its variance x
    U(0.5, 2). (Statistics drawn independently of the activations would let them vanish or explode
    over 71 layers and leave the logits nearly constant, a weak check.)"""
    variables = {v.op.name: v for v in tf1.global_variables()}
    for op in batch_norms:
        x = session.run(op.inputs[0], {image_input: image})
        mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
        std = np.sqrt(var)
        for index, value in ((3, mean + rng.normal(0, 0.2, mean.shape) * std),
                             (4, var * rng.uniform(0.5, 2.0, var.shape) + 1e-6)):
            variable = variables[op.inputs[index].op.inputs[0].op.name]   # <variable>/read -> variable
            variable.load(value.astype(np.float32), session)


def export_random_graph(research: Path, output_stride: int, workdir: Path, image: np.ndarray,
                        seed: int) -> tuple[Path, list]:
    """Build DeepLab's graph with random weights (batch-norm statistics calibrated on a crop of
    ``image``), save a checkpoint and export it with ``export_model.main``; the frozen graph and the
    (name, shape) of every variable."""
    tf1, common, model, export_model = import_deeplab(research)
    folder = workdir / TARBALL_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / "model.ckpt"
    frozen = folder / "frozen_inference_graph.pb"
    flags = export_model.FLAGS
    flags.unparse_flags()
    flags(zoo_flags(research, output_stride, checkpoint, frozen))
    rng = np.random.default_rng(seed)

    def options(crop_size):
        return common.ModelOptions(outputs_to_num_classes={common.OUTPUT_TYPE: flags.num_classes},
                                   crop_size=crop_size, atrous_rates=flags.atrous_rates,
                                   output_stride=flags.output_stride)

    with tf1.Graph().as_default() as graph:   # the exporter's graph, to create the variables and a checkpoint
        tf1.set_random_seed(seed)
        image_tensor, _, _ = export_model._create_input_tensors()
        model.predict_labels(image_tensor, model_options=options(flags.crop_size), image_pyramid=flags.image_pyramid)
        variables = [(v.op.name, v.shape.as_list()) for v in tf1.global_variables()]
        # the same variables on a small crop, to calibrate the batch-norm statistics quickly
        before = set(graph.get_operations())
        small = tf1.placeholder(tf1.float32, [1, *CALIBRATION_CROP, 3])
        model.predict_labels(small, model_options=options(list(CALIBRATION_CROP)), image_pyramid=flags.image_pyramid)
        batch_norms = [op for op in graph.get_operations() if op not in before and op.type.startswith("FusedBatchNorm")]
        crop = image[:CALIBRATION_CROP[0], :CALIBRATION_CROP[1]].astype(np.float32)[None]
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            randomize(tf1, session, rng)
            calibrate_batch_norms(tf1, session, batch_norms, small, crop, rng)
            tf1.train.Saver(tf1.global_variables()).save(session, str(checkpoint))
    set_verbosity = tf1.logging.set_verbosity
    tf1.logging.set_verbosity = lambda level: None    # keep export_model.main from turning INFO logs on
    try:
        export_model.main(None)      # rebuilds the graph and freezes it with the checkpoint
    finally:
        tf1.logging.set_verbosity = set_verbosity
    return frozen, variables


def pack_tarball(folder: Path, out: Path) -> Path:
    """The model-zoo layout: ``train_fine/{frozen_inference_graph.pb, model.ckpt.*}`` in a .tar.gz."""
    with tarfile.open(out, "w:gz", compresslevel=1) as tar:
        for path in sorted(folder.iterdir()):
            if path.name == "frozen_inference_graph.pb" or path.name.startswith("model.ckpt"):
                tar.add(path, arcname=f"{TARBALL_FOLDER}/{path.name}")
    return out


def run_frozen_graph(tf1, frozen: Path, images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """TensorFlow's outputs for each image: low-resolution logits, logits at the padded crop (before
    the argmax), SemanticPredictions, and the seconds each image took."""
    graph_def = tf1.GraphDef()
    graph_def.ParseFromString(frozen.read_bytes())
    ops = {}
    for node in graph_def.node:
        ops[node.op] = ops.get(node.op, 0) + 1
    argmax = [node for node in graph_def.node if node.op == "ArgMax"]
    assert len(argmax) == 1, f"expected one ArgMax in the graph, found {len(argmax)}"
    upsampled_name = argmax[0].input[0]
    outputs = {"op_counts": json.dumps(ops)}
    with tf1.Graph().as_default() as graph:
        tf1.import_graph_def(graph_def, name="")
        config = tf1.ConfigProto(intra_op_parallelism_threads=2, inter_op_parallelism_threads=1)
        with tf1.Session(graph=graph, config=config) as session:
            fetch = [graph.get_tensor_by_name("logits/semantic/BiasAdd:0"),
                     graph.get_tensor_by_name(f"{upsampled_name}:0"),
                     graph.get_tensor_by_name("SemanticPredictions:0")]
            for name, image in images.items():
                start = time.perf_counter()
                low, up, pred = session.run(fetch, {"ImageTensor:0": image[None]})
                outputs[f"{name}/seconds"] = np.float64(time.perf_counter() - start)
                h, w = image.shape[:2]
                outputs[f"{name}/logits"] = low[0]
                outputs[f"{name}/upsampled"] = up[0, :h, :w]
                outputs[f"{name}/predictions"] = pred[0]
    return outputs


# ------------------------------------------------------------------------------ PyTorch side
def compare(segmenter_path: Path, images_path: Path, tf_outputs_path: Path) -> dict:
    """Our imported segmenter against TensorFlow's outputs on every image (project environment)."""
    import torch

    sys.path.insert(0, str(ROOT))  # this checkout's project, whatever else is installed
    from eval.segmenters.base import from_uint8
    from eval.segmenters.files import load_segmenter

    torch.set_num_threads(2)
    model, meta = load_segmenter(segmenter_path)
    net = model.net
    images = np.load(images_path)
    reference = np.load(tf_outputs_path)
    rows = []
    for name in images.files:
        image = torch.from_numpy(images[name]).permute(2, 0, 1)[None]
        x = from_uint8(image)
        captured = {}
        hook = net.classifier.register_forward_hook(lambda m, i, out: captured.update(low=out[0]))
        start = time.perf_counter()
        with torch.no_grad():
            scores = model(x)[0]                 # logits at the image size; the 1/4 ones on the way
        seconds = time.perf_counter() - start
        hook.remove()
        low = captured["low"]
        pred = model.predict(x)[0]
        tf_low = torch.from_numpy(reference[f"{name}/logits"]).permute(2, 0, 1)
        tf_up = torch.from_numpy(reference[f"{name}/upsampled"]).permute(2, 0, 1)
        tf_pred = torch.from_numpy(reference[f"{name}/predictions"]).long()
        rows.append({
            "image": name, "output_stride": meta["config"]["output_stride"],
            "logit_scale": float(tf_up.abs().max()),
            "classes_predicted": int(tf_pred.unique().numel()),
            "max_abs_diff_logits": float((low - tf_low).abs().max()),
            "max_abs_diff_upsampled": float((scores - tf_up).abs().max()),
            "argmax_agreement": float((scores.argmax(0) == tf_up.argmax(0)).double().mean()),
            "max_margin_where_argmax_differs": max_tie_margin(tf_up, scores),
            "predict_agreement": float((pred == tf_pred).double().mean()),
            "seconds_ours": seconds, "seconds_tf": float(reference[f"{name}/seconds"]),
        })
    return {"segmenter": str(segmenter_path), "rows": rows}


def max_tie_margin(reference, ours) -> float:
    """The largest gap between the reference's best and second-best logit at pixels where the two
    argmaxes differ (0 if none): below the logits' max abs difference, every disagreement is a tie
    that rounding decides."""
    differs = reference.argmax(0) != ours.argmax(0)
    if not bool(differs.any()):
        return 0.0
    top2 = reference[:, differs].topk(2, dim=0).values
    return float((top2[0] - top2[1]).max())


# ------------------------------------------------------------------------------------ driver
def project(python: str, *args: str) -> subprocess.CompletedProcess:
    """Run the project's Python from the project root (no TensorFlow there)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([python, *args], cwd=ROOT, env=env, capture_output=True, text=True)


def verify_output_stride(args, research: Path, workdir: Path, images: dict, images_path: Path,
                         output_stride: int) -> tuple[list[dict], list[str]]:
    """Export DeepLab's graph at one output stride, import it, compare: (table rows, failures)."""
    from common.files import file_sha256

    results, failures = [], []
    os_dir = workdir / f"os{output_stride}"
    print(f"[OS {output_stride}] building DeepLab's DPC Xception-71 graph with random weights ...", flush=True)
    start = time.perf_counter()
    frozen, variables = export_random_graph(research, output_stride, os_dir, images["1024x2048"],
                                            args.seed + output_stride)
    tarball = pack_tarball(frozen.parent, os_dir / "deeplab_cityscapes_xception71_random.tar.gz")
    print(f"[OS {output_stride}] exported {frozen} ({frozen.stat().st_size / 1e6:.1f} MB, "
          f"{len(variables)} variables, {sum(int(np.prod(s)) for _, s in variables):,} values) "
          f"in {time.perf_counter() - start:.0f} s", flush=True)
    if args.write_variable_list:
        Path(args.write_variable_list).write_text(
            "".join(f"{name} {','.join(map(str, shape))}\n" for name, shape in variables))
    import tensorflow.compat.v1 as tf1
    outputs = run_frozen_graph(tf1, frozen, images)
    tf_path = os_dir / "tf_outputs.npz"
    np.savez(tf_path, **outputs)
    op_counts = json.loads(str(outputs["op_counts"]))
    print(f"[OS {output_stride}] TensorFlow ran {len(images)} images; SpaceToBatchND ops: "
          f"{op_counts.get('SpaceToBatchND', 0)}", flush=True)

    segmenter = os_dir / "dpc_xception71.pt"
    done = project(args.project_python, "-m", "eval.import_segmenter", "dpc_xception71", str(tarball),
                   "--out", str(segmenter), "--overwrite")
    print(f"[OS {output_stride}] import: {(done.stdout + done.stderr).strip()}", flush=True)
    if done.returncode:
        return results, [f"OS {output_stride}: import failed"]
    done = project(args.project_python, str(Path(__file__).resolve()), "compare", "--segmenter", str(segmenter),
                   "--images", str(images_path), "--tf-outputs", str(tf_path))
    if done.returncode:
        print(done.stdout + done.stderr, file=sys.stderr)
        return results, [f"OS {output_stride}: comparison failed"]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for row in report["rows"]:
        row["tarball_sha256"] = file_sha256(tarball)
        results.append(row)
        if row["argmax_agreement"] < ARGMAX_TARGET or row["predict_agreement"] < ARGMAX_TARGET:
            failures.append(f"OS {output_stride}, {row['image']}: argmax agreement "
                            f"{row['argmax_agreement']:.6%} / predict {row['predict_agreement']:.6%}")
    return results, failures


def verify(args) -> int:
    sys.path.insert(0, str(ROOT))  # this checkout's project (its numpy-only helpers)
    research = Path(args.research).resolve()
    if not (research / "deeplab" / "export_model.py").is_file():
        print(f"error: {research}: no deeplab/export_model.py (pass --research PATH/TO/models/research)",
              file=sys.stderr)
        return 2
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="verify_dpc_"))
    workdir.mkdir(parents=True, exist_ok=True)
    images = make_images(args.seed)
    images_path = workdir / "images.npz"
    np.savez(images_path, **images)
    results, failures = [], []
    for output_stride in args.output_strides:
        rows, failed = verify_output_stride(args, research, workdir, images, images_path, output_stride)
        results += rows
        failures += failed
    print_table(results)
    (workdir / "verify_dpc.json").write_text(json.dumps(results, indent=1))
    print(f"details in {workdir}")
    if failures:
        print("FAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    print(f"PASSED: argmax agreement >= {ARGMAX_TARGET:.2%} on every image and output stride")
    return 0


def print_table(rows: list[dict]) -> None:
    print("\n| OS | image (HxW) | max abs logit | classes predicted | max abs diff, logits 1/4 | max abs diff, logits at image "
          "| argmax agreement | predict vs SemanticPredictions | largest TF top-2 gap where argmax differs "
          "| s/image TF | s/image ours |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['output_stride']} | {r['image']} | {r['logit_scale']:.3g} | {r['classes_predicted']} "
              f"| {r['max_abs_diff_logits']:.3g} "
              f"| {r['max_abs_diff_upsampled']:.3g} | {r['argmax_agreement']:.6%} | {r['predict_agreement']:.6%} "
              f"| {r['max_margin_where_argmax_differs']:.3g} "
              f"| {r['seconds_tf']:.1f} | {r['seconds_ours']:.1f} |")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    cmp = sub.add_parser("compare", help="(project environment) compare an imported segmenter with saved TF outputs")
    cmp.add_argument("--segmenter", type=Path, required=True)
    cmp.add_argument("--images", type=Path, required=True)
    cmp.add_argument("--tf-outputs", type=Path, required=True)
    parser.add_argument("--research", default=str(DEFAULT_RESEARCH),
                        help="tensorflow/models research folder (holding deeplab/ and slim/)")
    parser.add_argument("--output-strides", type=int, nargs="+", default=[16, 8], choices=[8, 16])
    parser.add_argument("--project-python", default=str(ROOT / ".venv" / "bin" / "python"),
                        help="the project's Python (PyTorch, no TensorFlow)")
    parser.add_argument("--workdir", default=None, help="where graphs and outputs go; None: a new temporary folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-variable-list", default=None, metavar="PATH",
                        help="also write the graph's variables (name and shape, one a line) to PATH")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.command == "compare":
        print(json.dumps(compare(args.segmenter, args.images, args.tf_outputs)))
        return 0
    return verify(args)


if __name__ == "__main__":
    sys.exit(main())

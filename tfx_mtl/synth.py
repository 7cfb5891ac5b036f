"""Synthetic multi-task data whose task relatedness is one number.

Follows the construction of the MMoE paper (Ma et al., KDD 2018, section 3.2)
so that experiments can ask "does sharing help as tasks drift apart?" with the
answer not confounded by real data:

  x ~ N(0, I_d)
  w_1..w_K = c * L @ [u_1..u_K]   (u orthonormal, L L^T = C, C = 1 on the
                                   diagonal and RHO elsewhere: cos(w_k, w_j) = RHO)
  y_k = w_k.x + sum_{i=1..m} sin(alpha_i * w_k.x + beta_i) + eps_k

with alpha_i, beta_i ~ N(0, 1) shared by all tasks and eps_k ~ N(0, noise^2).
A task may be scaled (``label_scales``: loss scales differ by the square) or
made binary (1 above the median of its label, estimated on the first 2,000 rows).

Everything derives from ``seed``; the weights, the sine parameters, the inputs
and the noise each get their own child stream of one ``SeedSequence``, so row i
is the same whatever ``rows`` or chunk size is asked for. Pure numpy:
TensorFlow is imported only to write TFRecords.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Iterator

import numpy as np

from tfx_mtl.errors import InputError

TASK_TYPES = ("regression", "binary")
SINES = 10  # m in the paper
MEDIAN_ROWS = 2_000  # rows a binary task's threshold is estimated on
FORMATS = ("csv", "tfrecord")
DATA_FILES = {"csv": "data.csv", "tfrecord": "data.tfrecord"}
SPEC_FILE = "tasks.yaml"
_FORMAT_ROWS = 1_000  # rows turned into text at a time when writing CSV

# Child streams of SeedSequence(seed); their order is part of the output format.
_WEIGHTS, _SINES, _INPUTS, _NOISE = range(4)


class SynthError(InputError):
    """A generator argument is invalid; ``field`` names it."""


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, bool) and math.isfinite(value))


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """The generator's arguments; validated on construction."""

    rows: int
    tasks: int = 2
    correlation: float = 0.5
    features: int = 100
    seed: int = 0
    noise: float = 0.1
    label_scales: tuple[float, ...] | None = None
    task_types: tuple[str, ...] | None = None
    scale_c: float = 1.0  # c in the paper: the norm of every weight vector

    def __post_init__(self):
        for name in ("label_scales", "task_types"):  # lists are fine; store tuples
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        self.validate()

    def validate(self) -> None:
        """Raises :class:`SynthError` naming the first invalid field."""
        for name in ("rows", "tasks", "features"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise SynthError(name, f"must be a positive integer, got {value!r}")
        k = self.tasks
        if self.features < k:
            raise SynthError("features", f"must be at least tasks ({k}): the {k} weight vectors "
                             f"are built from {k} orthonormal vectors in R^features, "
                             f"got {self.features}")
        rho = self.correlation
        if not _is_real(rho):
            raise SynthError("correlation", f"must be a finite number, got {rho!r}")
        if k == 1 and not -1 <= rho <= 1:
            raise SynthError("correlation", f"must be in [-1, 1], got {rho!r}")
        if k > 1 and not -1 / (k - 1) < rho <= 1:
            raise SynthError("correlation", f"must be in (-1/(K-1), 1] for K={k} tasks "
                             f"(else no {k} vectors have that pairwise cosine), got {rho!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise SynthError("seed", f"must be a non-negative integer, got {self.seed!r}")
        if not _is_real(self.noise) or self.noise < 0:
            raise SynthError("noise", f"must be a non-negative number, got {self.noise!r}")
        if not _is_real(self.scale_c) or self.scale_c <= 0:
            raise SynthError("scale_c", f"must be a positive number, got {self.scale_c!r}")
        types = self.types
        if self.task_types is not None:
            if not isinstance(self.task_types, tuple) or len(self.task_types) != k:
                raise SynthError("task_types", f"must list one type per task ({k}), "
                                 f"got {self.task_types!r}")
            for i, t in enumerate(self.task_types):
                if t not in TASK_TYPES:
                    raise SynthError(f"task_types[{i}]",
                                     f"must be one of: {', '.join(TASK_TYPES)}; got {t!r}")
        if self.label_scales is not None:
            if not isinstance(self.label_scales, tuple) or len(self.label_scales) != k:
                raise SynthError("label_scales", f"must list one scale per task ({k}), "
                                 f"got {self.label_scales!r}")
            for i, s in enumerate(self.label_scales):
                if not _is_real(s) or s <= 0:
                    raise SynthError(f"label_scales[{i}]", f"must be a positive number, got {s!r}")
                if types[i] == "binary" and s != 1:
                    raise SynthError(f"label_scales[{i}]", f"task_{i + 1} is binary: its label "
                                     f"is 0/1, so a scale other than 1 has no effect; got {s!r}")

    @property
    def types(self) -> tuple[str, ...]:
        """Each task's type (all regression unless ``task_types`` says otherwise)."""
        if self.task_types is None:
            return ("regression",) * self.tasks
        return tuple(self.task_types)

    @property
    def scales(self) -> tuple[float, ...]:
        return tuple(self.label_scales) if self.label_scales is not None else (1.0,) * self.tasks


def task_names(config: SynthConfig) -> tuple[str, ...]:
    return tuple(f"task_{k + 1}" for k in range(config.tasks))


def feature_names(config: SynthConfig) -> tuple[str, ...]:
    return tuple(f"x_{i}" for i in range(config.features))


def _rng(config: SynthConfig, stream: int) -> np.random.Generator:
    child = np.random.SeedSequence(config.seed).spawn(4)[stream]
    return np.random.Generator(np.random.PCG64(child))


def cholesky_factor(tasks: int, correlation: float) -> np.ndarray:
    """Lower-triangular L with L L^T = 1 on the diagonal and ``correlation`` elsewhere.

    At correlation 1 the matrix is singular; its factor is then the column of ones
    (every task gets the same vector), which is what the limit rho -> 1 gives.
    """
    if correlation == 1:
        factor = np.zeros((tasks, tasks))
        factor[:, 0] = 1.0
        return factor
    c = np.full((tasks, tasks), float(correlation))
    np.fill_diagonal(c, 1.0)
    try:
        return np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        raise SynthError("correlation", f"{correlation!r} is numerically too close to "
                         f"-1/(K-1) for K={tasks} tasks") from None


def weight_vectors(config: SynthConfig) -> np.ndarray:
    """The K task weight vectors [K, d]: norm ``scale_c``, pairwise cosine ``correlation``."""
    gaussian = _rng(config, _WEIGHTS).standard_normal((config.features, config.tasks))
    q, r = np.linalg.qr(gaussian)  # q: [d, K], orthonormal columns u_1..u_K
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)  # make the factorisation unique
    return config.scale_c * cholesky_factor(config.tasks, config.correlation) @ q.T


def sine_parameters(config: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    """alpha, beta [m]: shared by all tasks, as in the paper."""
    rng = _rng(config, _SINES)
    return rng.standard_normal(SINES), rng.standard_normal(SINES)


def labels(projections: np.ndarray, alpha: np.ndarray, beta: np.ndarray,
           noise: np.ndarray) -> np.ndarray:
    """y = z + sum_i sin(alpha_i z + beta_i) + eps, elementwise for z = w.x [n, K]."""
    y = projections + noise
    for a, b in zip(alpha, beta):  # a loop, not an [n, K, m] array: memory stays O(n K)
        y += np.sin(a * projections + b)
    return y


def _raw_chunks(config: SynthConfig, rows: int, chunk_rows: int
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(x float32 [n, d], continuous y float64 [n, K]) chunk by chunk, unscaled.

    The ``del``s keep at most one chunk's arrays alive at a time.
    """
    w = weight_vectors(config)
    alpha, beta = sine_parameters(config)
    inputs, noise = _rng(config, _INPUTS), _rng(config, _NOISE)
    for start in range(0, rows, chunk_rows):
        n = min(chunk_rows, rows - start)
        x = inputs.standard_normal((n, config.features))
        eps = noise.standard_normal((n, config.tasks)) * config.noise
        # Per-row sums rather than x @ w.T: BLAS may sum in an order that depends
        # on the matrix size, which would make row i depend on the chunk size.
        z = np.stack([(x * w[k]).sum(axis=1) for k in range(config.tasks)], axis=1)
        y = labels(z, alpha, beta, eps)
        x = x.astype(np.float32)
        del eps, z
        yield x, y
        del x, y


def thresholds(config: SynthConfig) -> np.ndarray:
    """Per task: the median of its (scaled) label over the first 2,000 rows."""
    y = np.concatenate([y for _, y in _raw_chunks(config, MEDIAN_ROWS, MEDIAN_ROWS)])
    return np.median(y.astype(np.float32) * np.asarray(config.scales, np.float32), axis=0)


def _check_chunk_rows(chunk_rows) -> None:
    if not _is_int(chunk_rows) or chunk_rows < 1:
        raise SynthError("chunk_rows", f"must be a positive integer, got {chunk_rows!r}")


def _matrix_chunks(config: SynthConfig, chunk_rows: int
                   ) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
    """(x float32 [n, d], one label array per task) chunk by chunk: the output values."""
    types, scales = config.types, config.scales
    cut = thresholds(config) if "binary" in types else None
    for x, y in _raw_chunks(config, config.rows, chunk_rows):
        columns = []
        for k in range(config.tasks):
            # Scale in float32 so the scaled label is exactly scale * unscaled label.
            y_k = y[:, k].astype(np.float32) * np.float32(scales[k])
            columns.append((y_k > cut[k]).astype(np.int64) if types[k] == "binary" else y_k)
        del y
        yield x, columns
        del x, columns


def chunks(config: SynthConfig, chunk_rows: int = 10_000) -> Iterator[dict[str, np.ndarray]]:
    """Column name -> array, ``chunk_rows`` rows at a time (memory independent of rows).

    Features ``x_i`` are float32; regression labels float32, binary labels int64 0/1.
    """
    _check_chunk_rows(chunk_rows)  # now, not at the first next()
    names = feature_names(config) + task_names(config)

    def generate():
        for x, ys in _matrix_chunks(config, chunk_rows):
            yield dict(zip(names, [*np.ascontiguousarray(x.T), *ys]))
    return generate()


def sample(config: SynthConfig) -> dict[str, np.ndarray]:
    """All rows in memory (tests and benchmarks)."""
    parts = list(chunks(config))
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def data_files(fmt: str, files: int = 1) -> list[str]:
    """The names :func:`write` gives ``files`` data files of format ``fmt``: ``data.csv``
    / ``data.tfrecord`` for one, ``part-00000-of-00004.csv`` ... for several (names
    tfx_mtl.data.PATTERNS match, so ExampleGen reads them all)."""
    if files == 1:
        return [DATA_FILES[fmt]]
    return [f"part-{i:05d}-of-{files:05d}.{fmt}" for i in range(files)]


def _existing_data(out_dir: str) -> list[str]:
    """The data files a previous :func:`write` may have left in ``out_dir``."""
    if not os.path.isdir(out_dir):
        return []
    return sorted(os.path.join(out_dir, name) for name in os.listdir(out_dir)
                  if name in DATA_FILES.values()
                  or (name.startswith("part-") and name.endswith(tuple(f".{f}" for f in FORMATS))))


def write(config: SynthConfig, out_dir: str | os.PathLike, fmt: str = "csv", *,
          chunk_rows: int = 10_000, overwrite: bool = False, files: int = 1) -> dict:
    """Writes ``data.csv`` or ``data.tfrecord`` plus a matching ``tasks.yaml`` to ``out_dir``;
    with ``files`` > 1, the rows in that many files of consecutive rows
    (:func:`data_files`; the first ``rows % files`` get one row more), which together
    hold the rows one file would.

    Streams chunk by chunk (memory does not grow with rows) into temporary files
    renamed at the end, so a failed run leaves no half-written data behind.
    Refuses to replace non-empty data files unless ``overwrite``; the previous data
    files (either format, any number of files) are removed, so the directory always
    holds one dataset, the one ``tasks.yaml`` describes. Returns the data file, or the
    directory when there are several files, as ``data`` (what ``--data`` takes).
    """
    if fmt not in FORMATS:
        raise SynthError("fmt", f"must be one of: {', '.join(FORMATS)}; got {fmt!r}")
    if not _is_int(files) or not 1 <= files <= config.rows:
        raise SynthError("files", f"must be an integer from 1 to rows ({config.rows}), "
                         f"got {files!r}")
    _check_chunk_rows(chunk_rows)
    out_dir = os.fspath(out_dir)
    existing = _existing_data(out_dir)
    for path in existing:
        if os.path.getsize(path) > 0 and not overwrite:
            raise SynthError("out_dir", f"{path} already exists and is not empty "
                             "(overwrite=True, --overwrite on the command line, replaces it)")
    os.makedirs(out_dir, exist_ok=True)
    started = time.perf_counter()
    paths = [os.path.join(out_dir, name) for name in data_files(fmt, files)]
    tmp_paths = [path + ".tmp" for path in paths]
    counts = [config.rows // files + (i < config.rows % files) for i in range(files)]
    try:
        parts = _parts(_matrix_chunks(config, chunk_rows), counts)
        (_write_csv if fmt == "csv" else _write_tfrecord)(config, tmp_paths, parts)
        for path in existing:
            os.remove(path)
        for tmp_path, path in zip(tmp_paths, paths):
            os.replace(tmp_path, path)
    finally:
        for tmp_path in tmp_paths:
            if os.path.exists(tmp_path):
                os.remove(tmp_path)
    spec_path = os.path.join(out_dir, SPEC_FILE)
    with open(spec_path, "w") as f:
        f.write(spec_yaml(config, fmt, files))
    return {"data": paths[0] if files == 1 else out_dir, "spec": spec_path, "format": fmt,
            "rows": config.rows, "columns": config.features + config.tasks, "files": files,
            "seconds": round(time.perf_counter() - started, 3)}


def _parts(matrix_chunks, counts: list[int]
           ) -> Iterator[tuple[int, np.ndarray, list[np.ndarray]]]:
    """(file index, x, labels) pieces of the chunks, file i getting the next counts[i] rows."""
    part, left = 0, counts[0]
    for x, ys in matrix_chunks:
        start = 0
        while start < len(x):
            while left == 0:
                part += 1
                left = counts[part]
            stop = min(len(x), start + left)
            yield part, x[start:stop], [y[start:stop] for y in ys]
            left -= stop - start
            start = stop
        del x, ys  # before the next chunk is made


class _Outputs:
    """One open output per file, opened when its first piece comes and closed when the
    next file's does (files are written one after the other)."""

    def __init__(self, paths: list[str], open_fn):
        self._paths, self._open, self._index, self._current = paths, open_fn, -1, None

    def get(self, index: int):
        if index != self._index:
            self.close()
            self._index, self._current = index, self._open(self._paths[index])
        return self._current

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None


def _write_csv(config: SynthConfig, paths: list[str], parts) -> None:
    # %.9g: nine significant digits round-trip every float32 (%.7g does not).
    line = ",".join(["%.9g"] * config.features
                    + ["%d" if t == "binary" else "%.9g" for t in config.types]) + "\n"
    header = ",".join(feature_names(config) + task_names(config)) + "\n"

    def open_csv(path):
        f = open(path, "w", newline="")
        f.write(header)
        return f
    outputs = _Outputs(paths, open_csv)
    try:
        for index, x, ys in parts:
            f = outputs.get(index)
            for start in range(0, len(x), _FORMAT_ROWS):
                block = slice(start, start + _FORMAT_ROWS)
                rows = zip(x[block].tolist(), *(y[block].tolist() for y in ys))
                f.write("".join(line % (*xs, *label) for xs, *label in rows))
    finally:
        outputs.close()


def _write_tfrecord(config: SynthConfig, paths: list[str], parts) -> None:
    import tensorflow as tf

    features, tasks, types = feature_names(config), task_names(config), config.types
    outputs = _Outputs(paths, tf.io.TFRecordWriter)
    try:
        for index, x, ys in parts:
            writer = outputs.get(index)
            label_lists = [y.tolist() for y in ys]
            for i, xs in enumerate(x.tolist()):
                feature = {name: tf.train.Feature(float_list=tf.train.FloatList(value=[v]))
                           for name, v in zip(features, xs)}
                for name, kind, y in zip(tasks, types, label_lists):
                    feature[name] = (
                        tf.train.Feature(int64_list=tf.train.Int64List(value=[y[i]]))
                        if kind == "binary" else
                        tf.train.Feature(float_list=tf.train.FloatList(value=[y[i]])))
                example = tf.train.Example(features=tf.train.Features(feature=feature))
                # Deterministic: map entries in key order, else their order (and the
                # file's bytes) varies from one process to the next.
                writer.write(example.SerializeToString(deterministic=True))
    finally:
        outputs.close()


def command_line(config: SynthConfig, fmt: str = "csv", files: int = 1) -> str:
    """The ``tfx-mtl synth`` arguments that regenerate this data (bar --out)."""
    args = [f"--rows {config.rows}", f"--tasks {config.tasks}",
            f"--correlation {config.correlation!r}", f"--features {config.features}",
            f"--seed {config.seed}", f"--noise {config.noise!r}", f"--scale-c {config.scale_c!r}"]
    if config.label_scales is not None:
        args.append("--label-scales " + ",".join(repr(float(s)) for s in config.label_scales))
    if config.task_types is not None:
        args.append("--task-types " + ",".join(config.task_types))
    args.append(f"--format {fmt}")
    if files != 1:
        args.append(f"--files {files}")
    return "tfx-mtl synth " + " ".join(args)


# Every task's first metric is bounded against its single-task baseline (a 1% relative
# regression, read as the spec's evaluation.reading decides), so a synthetic run never
# blesses a task whatever it scores.
SPEC_MAX_REGRESSION = "1%"


def spec_yaml(config: SynthConfig, fmt: str = "csv", files: int = 1) -> str:
    """The task spec text for the generated data (loads with ``task_spec.load``)."""
    names = task_names(config)
    lines = [
        "# Synthetic multi-task data: tfx_mtl.synth, after Ma et al., KDD 2018, section 3.2.",
        f"# {config.tasks} task(s) whose weight vectors have pairwise cosine similarity "
        f"{config.correlation!r}.",
        "# Generated (byte-identical when rerun) by:",
        f"#   {command_line(config, fmt, files)}",
        f"#   {config!r}",
        "name: synth",
        "",
        "features:",
        *(f"  - {{name: {name}, kind: numeric}}" for name in feature_names(config)),
        "",
        "tasks:",
    ]
    for k, (name, kind) in enumerate(zip(names, config.types)):
        lines += [f"  - name: {name}", f"    type: {kind}", f"    label: {name}",
                  f"    role: {'primary' if k == 0 else 'auxiliary'}"]
        if kind == "binary":
            lines += ["    loss: binary_crossentropy",
                      f"    metrics: [{{name: auc, max_regression: {SPEC_MAX_REGRESSION}}}, "
                      "binary_accuracy]"]
        else:
            lines += ["    loss: mse",
                      f"    metrics: [{{name: rmse, max_regression: {SPEC_MAX_REGRESSION}}}, mae]"]
            if config.label_scales is not None:
                lines += [f"    # label_scales {config.scales[k]!r}: learn in label units so "
                          "the scale difference reaches the loss",
                          "    standardize: false"]
    return "\n".join(lines) + "\n"

"""``POST /explain``: per row, each feature's contribution to one model output, and the base value.

What is explained is one number per row, the served graph's own output: the predicted value
(regression) or the probability of one class (classification: the predicted class, or the one
``?class=`` names). Contributions are Shapley values of the interventional game over the
artifact's background rows (:mod:`onnxkit.contract.background`): a coalition ``S`` of features
is worth ``v(S) = mean_b f(x_S, b_rest)``, the model's mean output when the features in ``S``
take the row's values and the others each background row's. The base value is ``v({})``, the
mean output over the background; by the efficiency property the contributions add up to
``f(x) - base``. Everything runs on the ONNX session and numpy: no scikit-learn.

Three methods, chosen per model (:func:`method_for`):

- ``exact_additive`` (``ridge``): the output is a sum of one term per feature (imputation,
  scaling, one-hot and the linear layer are all per feature), so ``phi_j = v({j}) - v({})``
  exactly: F coalitions per row. Additivity then holds up to float32 rounding of the graph.
- ``exact_shapley``: when all ``2^F - 2`` proper coalitions fit the budget (:data:`BUDGET`),
  every one is evaluated and the Shapley-kernel weighted least squares with the efficiency
  constraint is solved; on the full set of coalitions its solution is exactly the Shapley
  values (Lundberg and Lee, 2017, theorem 2), which the tests check against the brute-force
  formula.
- ``kernel_shap``: otherwise, KernelSHAP with the same constraint over :data:`BUDGET`
  coalitions: sizes enumerated from the outside in while they fit (1 and F-1 first), the rest
  sampled with a fixed seed in complementary pairs, weighted by the kernel's remaining mass.

The coalitions and the solver depend on the number of features only, so they are built once
per model; each row is evaluated alone, in one ``session.run`` of the same shape, so its
explanation never depends on the other rows of the call, and repeated calls give the same bits.
Additivity: ``|base + sum(phi) - output| <= TOLERANCE * (1 + |output|)`` (the constraint makes
it exact in float64 for the Shapley methods; float32 rounding bounds the additive one).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations
from math import comb
from typing import Any

import numpy as np

from onnxkit.contract.api import EXPLAIN_CLASS_PARAMETER
from onnxkit.contract.background import Background, BackgroundError, parse_background
from onnxkit.contract.layout import BACKGROUND_FILE, sha256_bytes

from .errors import ApiError
from .predictor import Model
from .source import LocatedModel, ModelLocator, ModelSourceError

log = logging.getLogger(__name__)

# Coalitions evaluated per row (each over every background row): the cost and the accuracy.
BUDGET = 512
SEED = 20261206  # the sampled coalitions' seed: fixed, so every call gives the same answer
# Estimators whose output is a sum of one term per feature (the regression output).
ADDITIVE_ESTIMATORS = frozenset({"ridge"})
# base + sum(contributions) is within TOLERANCE * (1 + |output|) of the output (tests check).
TOLERANCE = 1e-4

NO_BACKGROUND = ApiError(
    409,
    "no_background",
    f"this model's artifact has no {BACKGROUND_FILE} (it was trained before onnxkit stored an "
    "explanation background): retrain and promote it to explain its predictions; "
    "/predict serves it as before",
)
UNAVAILABLE = ApiError(
    503,
    "explanation_unavailable",
    f"the model's {BACKGROUND_FILE} could not be read or does not match its manifest; the "
    "function's log says why",
)


@dataclass(frozen=True)
class Coalitions:
    """Feature coalitions (rows of ``masks``: True = the feature takes the row's value) and
    their Shapley-kernel weights."""

    masks: np.ndarray  # (K, F) bool
    weights: np.ndarray  # (K,) float64
    exact: bool  # every proper coalition is present


def _kernel_mass(n_features: int, size: int) -> float:
    """The Shapley kernel's total weight over all coalitions of ``size`` features."""
    return (n_features - 1) / (size * (n_features - size))


def coalitions(n_features: int, budget: int = BUDGET, seed: int = SEED) -> Coalitions:
    """KernelSHAP's coalitions for ``n_features`` (>= 2): every coalition of a size while the
    size and its complement fit the budget, then seeded complementary pairs of the rest, each
    weighted so the sizes keep the kernel's mass. Depends on its arguments only."""
    masks: dict[bytes, np.ndarray] = {}
    weights: dict[bytes, float] = {}

    def add(mask: np.ndarray, weight: float) -> None:
        key = mask.tobytes()
        masks.setdefault(key, mask)
        weights[key] = weights.get(key, 0.0) + weight

    remaining = budget
    left = list(range(1, n_features))
    for size in range(1, n_features // 2 + 1):
        sizes = sorted({size, n_features - size})
        count = sum(comb(n_features, s) for s in sizes)
        if count > remaining:
            break
        for s in sizes:
            weight = _kernel_mass(n_features, s) / comb(n_features, s)
            for members in combinations(range(n_features), s):
                mask = np.zeros(n_features, dtype=bool)
                mask[list(members)] = True
                add(mask, weight)
            left.remove(s)
        remaining -= count
    exact = not left
    if left and remaining >= 2:
        rng = np.random.default_rng(seed)
        mass = np.array([_kernel_mass(n_features, s) for s in left])
        pairs = remaining // 2
        weight = float(mass.sum()) / (2 * pairs)
        for size in rng.choice(left, size=pairs, p=mass / mass.sum()):
            mask = np.zeros(n_features, dtype=bool)
            mask[rng.choice(n_features, size=int(size), replace=False)] = True
            add(mask, weight)
            add(~mask, weight)
    keys = list(masks)
    return Coalitions(
        masks=np.array([masks[k] for k in keys]),
        weights=np.array([weights[k] for k in keys]),
        exact=exact,
    )


@dataclass(frozen=True)
class Solver:
    """The efficiency-constrained weighted least squares of KernelSHAP, solved once for a set
    of coalitions: ``phi = P @ (v - base) + q * (output - base)``."""

    P: np.ndarray  # (F, K)
    q: np.ndarray  # (F,)

    @classmethod
    def of(cls, found: Coalitions) -> Solver:
        """Minimise sum_k w_k (v_k - base - z_k . phi)^2 subject to sum(phi) = output - base,
        through its KKT system [[Z'WZ, 1], [1', 0]]."""
        Z = found.masks.astype(np.float64)
        W = found.weights
        n = Z.shape[1]
        kkt = np.zeros((n + 1, n + 1))
        kkt[:n, :n] = Z.T @ (W[:, None] * Z)
        kkt[:n, n] = kkt[n, :n] = 1.0
        inverse = np.linalg.inv(kkt)
        return cls(P=inverse[:n, :n] @ (Z.T * W), q=inverse[:n, n])

    def __call__(self, values: np.ndarray, base: float, output: float) -> np.ndarray:
        """Each feature's contribution, from the coalitions' values."""
        result: np.ndarray = self.P @ (values - base) + self.q * (output - base)
        return result


def method_for(model: Model) -> str:
    """``exact_additive``, ``exact_shapley`` or ``kernel_shap`` (see the module's text)."""
    if model.task == "regression" and model.public.get("estimator") in ADDITIVE_ESTIMATORS:
        return "exact_additive"
    n = len(model.features)
    if n < 2 or (1 << n) - 2 <= BUDGET:
        return "exact_shapley"
    return "kernel_shap"


class Explainer:
    """Explains rows of one model against its background; built once per model."""

    def __init__(self, model: Model, background: Background) -> None:
        names = [spec.name for spec in model.features]
        if background.features != names:
            raise BackgroundError(
                f"the background's features {background.features} are not the signature's"
            )
        self.model = model
        self.method = method_for(model)
        n = len(names)
        if self.method == "exact_additive":
            self.masks = np.eye(n, dtype=bool)
            self.solver: Solver | None = None
        elif n == 1:
            self.masks = np.zeros((0, 1), dtype=bool)
            self.solver = None
        else:
            found = coalitions(n)
            self.masks, self.solver = found.masks, Solver.of(found)
        feed = model.feed(background.rows)
        # Copies: a one-row feed is the builder's per-thread buffer, reused by the next call.
        self.background = {name: np.array(column).reshape(-1) for name, column in feed.items()}
        self.rows = len(background.rows)
        self.base = self._values(feed)[1].mean(axis=0)  # (C,): one base value per output

    def _values(self, feed: Mapping[str, np.ndarray]) -> tuple[np.ndarray | None, np.ndarray]:
        """Labels (classification) and the explained outputs ``(N, C)`` in float64."""
        outputs = self.model.session.run(self.model.output_names, dict(feed))
        if self.model.task == "classification":
            labels, probabilities = outputs
            return np.asarray(labels).reshape(-1), np.asarray(probabilities, dtype=np.float64)
        return None, np.asarray(outputs[0], dtype=np.float64).reshape(-1, 1)

    def _coalition_values(self, row: Mapping[str, np.ndarray]) -> np.ndarray:
        """``v(S)`` for every coalition: ``(K, C)``, each the mean over the background."""
        k = len(self.masks)
        hybrid = {}
        for j, spec in enumerate(self.model.features):
            name = spec.onnx_input
            column = np.where(
                self.masks[:, j : j + 1], row[name].reshape(1, 1), self.background[name]
            )
            hybrid[name] = column.reshape(k * self.rows, 1)
        return self._values(hybrid)[1].reshape(k, self.rows, -1).mean(axis=1)

    def target(self, requested: str | None) -> int | None:
        """The index of the class ``?class=`` names (None: each row's predicted class); a 400
        for a class the model does not have, or any class for a regression."""
        if requested is None:
            return None
        classes = self.model.classes
        if self.model.task != "classification" or not classes:
            raise ApiError(
                400,
                "invalid_class",
                f"{EXPLAIN_CLASS_PARAMETER}: a regression model has no classes; its predicted "
                "value is explained",
            )
        for index, name in enumerate(classes):
            if str(name) == requested:
                return index
        shown = ", ".join(map(str, classes[:20])) + (", ..." if len(classes) > 20 else "")
        raise ApiError(
            400,
            "invalid_class",
            f"{EXPLAIN_CLASS_PARAMETER}: {requested!r} is not one of the model's classes ({shown})",
        )

    def explain_row(self, row: Mapping[str, np.ndarray], target: int | None) -> dict[str, Any]:
        """One row's explanation; ``row`` holds ``[1, 1]`` inputs."""
        labels, outputs = self._values(row)
        answer: dict[str, Any] = {}
        if labels is None:
            column = 0
        else:
            column = target if target is not None else self._class_index(labels[0], outputs[0])
            answer["class"] = self.model.classes[column] if self.model.classes else column
        output = float(outputs[0, column])
        base = float(self.base[column])
        if self.masks.size == 0:  # one feature: it carries the whole difference
            contributions = np.array([output - base])
        else:
            values = self._coalition_values(row)[:, column]
            if self.solver is None:
                contributions = values - base
            else:
                contributions = self.solver(values, base, output)
        names = [spec.name for spec in self.model.features]
        answer.update(
            output=output,
            base_value=base,
            contributions=dict(zip(names, contributions.tolist(), strict=True)),
        )
        return answer

    def _class_index(self, label: Any, probabilities: np.ndarray) -> int:
        """Where the predicted label is among the classes (what /predict answered)."""
        wanted = str(label.item() if hasattr(label, "item") else label)
        for index, name in enumerate(self.model.classes or []):
            if str(name) == wanted:
                return index
        return int(np.argmax(probabilities))  # pragma: no cover - the graph's labels are classes

    def explain(self, feed: Mapping[str, np.ndarray], requested: str | None) -> dict[str, Any]:
        """The response body for a decoded feed: one explanation per row, in order."""
        target = self.target(requested)
        size = len(next(iter(feed.values())))
        # Copies: the decoder's one-row feed is a per-thread buffer (see FeedBuilder).
        rows = [
            {name: np.array(array[i : i + 1]) for name, array in feed.items()} for i in range(size)
        ]
        return {
            "model_version": self.model.model_version,
            "method": self.method,
            "output": "probability" if self.model.task == "classification" else "value",
            "background_rows": self.rows,
            "coalitions": len(self.masks),
            "features": [spec.name for spec in self.model.features],
            "explanations": [self.explain_row(row, target) for row in rows],
        }


def requested_class(event: Mapping[str, Any]) -> str | None:
    """The ``?class=`` query parameter of any front door's event, or None."""
    query = event.get("queryStringParameters") or {}
    value = query.get(EXPLAIN_CLASS_PARAMETER) if isinstance(query, dict) else None
    return value if isinstance(value, str) else None


class Explainers:
    """The explainer of the runtime's current model, built on its first ``/explain`` call
    (the background is read then, never at cold start) and kept while that model serves."""

    def __init__(self, locator: ModelLocator) -> None:
        self._locator = locator
        self._lock = threading.Lock()
        self._built: tuple[Model, Explainer | ApiError] | None = None

    def get(self, model: Model, located: LocatedModel | None) -> Explainer:
        """The model's explainer, or the ApiError that says why it has none."""
        built = self._built
        if built is None or built[0] is not model:
            with self._lock:
                built = self._built
                if built is None or built[0] is not model:
                    built = (model, self._build(model, located))
                    if not isinstance(built[1], ApiError) or built[1] is NO_BACKGROUND:
                        self._built = built  # an S3 hiccup is retried by the next call
        found = built[1]
        if isinstance(found, ApiError):
            raise found
        return found

    def _build(self, model: Model, located: LocatedModel | None) -> Explainer | ApiError:
        digest = model.files.get(BACKGROUND_FILE)
        if digest is None:
            return NO_BACKGROUND
        try:
            raw = None if located is None else self._locator.companion(located, BACKGROUND_FILE)
            if raw is None:
                raise BackgroundError(f"{BACKGROUND_FILE} is listed in the manifest but absent")
            if sha256_bytes(raw) != digest:
                raise BackgroundError(f"{BACKGROUND_FILE} does not match the manifest's sha256")
            return Explainer(model, parse_background(raw))
        except (BackgroundError, ModelSourceError, OSError, ApiError) as error:
            log.error("cannot explain %s %s: %s", model.model_name, model.model_version, error)
            return UNAVAILABLE

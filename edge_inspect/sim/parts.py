"""Procedural images of a machined plate with exact ground truth, deterministic by seed.

A part is a grey plate with four screw holes (each with or without its screw), zero or more
surface defects (scratches: thin bright or dark lines; spots: dark blobs; dents: shaded blobs),
and a label that is present and straight, skewed, or absent. Lighting gradient, noise, blur, a
small rotation, offset and scale, and the background vary with the seed. A ``Camera`` adds
explicit geometry (scale, rotation, translation) and photometry (brightness, blur, noise, JPEG)
on top: the same part seen by a camera that has moved or whose light has changed (training
augmentation, the robustness suite). Masks and points go through the same geometry as the image.

Ground truth is computed in the final image's pixel frame: every object has a point (where a
model should point), a boolean mask, and a kind. Used by the demo camera, training and evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

DEFECT_KINDS = ("scratch", "spot", "dent")  # what a part's defects are drawn from by default
# Kinds the generator can draw only when asked (``PartSpec.defect_kinds``): the demo student never saw
# them, so a line that starts producing one is a new defect the model must learn from review
# (docs/model-lifecycle.md, "Fine-tune"). crack: a thin, dark, jagged line that may fork; chip: a
# piece broken out of the plate's edge (the background shows through a jagged notch).
NEW_KINDS = ("crack", "chip")
ALL_DEFECT_KINDS = DEFECT_KINDS + NEW_KINDS


@dataclass(frozen=True)
class PartSpec:
    """What a generated part should contain; fields left as None are drawn from the seed."""

    screws: int | None = None  # how many of the 4 holes hold a screw
    defects: int | None = None  # number of surface defects
    label: str | None = None  # "straight", "skewed" or "absent"
    defect_kinds: tuple[str, ...] = DEFECT_KINDS  # drawn from uniformly; any of ALL_DEFECT_KINDS

    def __post_init__(self) -> None:
        unknown = [k for k in self.defect_kinds if k not in ALL_DEFECT_KINDS]
        if unknown or not self.defect_kinds:
            raise ValueError(f"defect kinds {list(self.defect_kinds)}: each one of {', '.join(ALL_DEFECT_KINDS)}")


@dataclass(frozen=True)
class Camera:
    """How the camera sees the part, on top of the seed's own small jitter (identity by default).

    Geometry about the image centre, in this order: scale, rotation (degrees, counter-clockwise as
    OpenCV), translation (fractions of width and height). Photometry on the rendered image:
    brightness (relative gain: -0.3 is 30 % darker), Gaussian blur (sigma, px), Gaussian noise
    (sigma, grey levels), JPEG compression (quality 1–100; 0 = none)."""

    scale: float = 1.0
    rotation: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)
    brightness: float = 0.0
    blur: float = 0.0
    noise: float = 0.0
    jpeg: int = 0

    def __post_init__(self) -> None:
        if (
            not 0.2 <= self.scale <= 5
            or not -1 < self.brightness <= 5
            or self.blur < 0
            or self.noise < 0
            or not 0 <= self.jpeg <= 100
        ):
            raise ValueError(f"camera out of range: {self}")

    @property
    def moves(self) -> bool:
        return self.scale != 1.0 or self.rotation != 0.0 or tuple(self.shift) != (0.0, 0.0)

    def matrix(self, width: int, height: int) -> np.ndarray:
        """The 3×3 image transform of the geometry knobs."""
        m = np.eye(3)
        m[:2] = cv2.getRotationMatrix2D((width / 2, height / 2), self.rotation, self.scale)
        m[0, 2] += self.shift[0] * width
        m[1, 2] += self.shift[1] * height
        return m


@dataclass
class GroundTruthObject:
    kind: str  # "screw", "empty_hole", or a defect kind (ALL_DEFECT_KINDS)
    point: tuple[float, float]  # pixel (x, y) in the image
    mask: np.ndarray  # bool [H, W]

    def normalized(self, width: int, height: int) -> tuple[float, float]:
        return self.point[0] / width, self.point[1] / height


@dataclass
class Part:
    image: np.ndarray  # BGR uint8 [H, W, 3]
    seed: int
    objects: list[GroundTruthObject] = field(default_factory=list)
    label: str = "straight"
    label_mask: np.ndarray | None = None  # bool [H, W]: where the label is (empty when absent)

    @property
    def height(self) -> int:
        return self.image.shape[0]

    @property
    def width(self) -> int:
        return self.image.shape[1]

    def of_kind(self, *kinds: str) -> list[GroundTruthObject]:
        return [o for o in self.objects if o.kind in kinds]

    @property
    def screws(self) -> list[GroundTruthObject]:
        return self.of_kind("screw")

    @property
    def defects(self) -> list[GroundTruthObject]:
        return self.of_kind(*ALL_DEFECT_KINDS)

    def answers(self) -> dict[str, bool]:
        """Yes/no ground truth for the label questions."""
        return {"label_present": self.label != "absent", "label_straight": self.label == "straight"}


def _draw_blob(canvas: np.ndarray, mask: np.ndarray, center, axes, angle, color) -> None:
    c = (int(round(center[0] * 16)), int(round(center[1] * 16)))
    a = (max(16, int(round(axes[0] * 16))), max(16, int(round(axes[1] * 16))))
    cv2.ellipse(canvas, c, a, angle, 0, 360, color, -1, cv2.LINE_AA, shift=4)
    cv2.ellipse(mask, c, a, angle, 0, 360, 255, -1, cv2.LINE_8, shift=4)


Layer = tuple[str, tuple[float, float], np.ndarray]  # kind, point, mask (uint8) on the plate-aligned canvas


@dataclass
class _Canvas:
    """The plate-aligned drawing: the float image, the background and plate tones, the plate's
    mask and corners. Every step draws on it in turn with the part's one random generator."""

    image: np.ndarray  # float32 [H, W, 3]
    bg: float
    plate: np.ndarray  # uint8 [H, W]: 255 on the plate
    plate_tone: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1

    @property
    def height(self) -> int:
        return self.image.shape[0]

    @property
    def width(self) -> int:
        return self.image.shape[1]


def _draw_plate(rng: np.random.Generator, width: int, height: int) -> _Canvas:
    bg = rng.uniform(25, 70)
    canvas = np.full((height, width, 3), bg, np.float32)
    canvas += rng.normal(0, 6, 3).astype(np.float32)  # background tint
    margin_x, margin_y = width * 0.12, height * 0.12
    x0, y0, x1, y1 = margin_x, margin_y, width - margin_x, height - margin_y
    plate_tone = rng.uniform(140, 200)
    plate = np.zeros((height, width), np.uint8)
    cv2.rectangle(plate, (int(x0), int(y0)), (int(x1), int(y1)), 255, -1)
    canvas[plate > 0] = plate_tone + rng.normal(0, 3, 3)
    return _Canvas(canvas, bg, plate, plate_tone, (x0, y0, x1, y1))


def _draw_holes(rng: np.random.Generator, c: _Canvas, spec: PartSpec) -> list[Layer]:
    """The four holes, each with its screw or empty."""
    canvas, width, height, plate_tone, bg = c.image, c.width, c.height, c.plate_tone, c.bg
    x0, y0, x1, y1 = c.box
    layers: list[Layer] = []
    hole_r = min(width, height) * 0.045
    holes = [
        (x0 + 0.09 * (x1 - x0), y0 + 0.12 * (y1 - y0)),
        (x1 - 0.09 * (x1 - x0), y0 + 0.12 * (y1 - y0)),
        (x0 + 0.09 * (x1 - x0), y1 - 0.12 * (y1 - y0)),
        (x1 - 0.09 * (x1 - x0), y1 - 0.12 * (y1 - y0)),
    ]
    if spec.screws is None:
        # Half the parts are complete; the others miss one to four screws.
        n_screws = 4 if rng.random() < 0.5 else int(rng.integers(0, 4))
    else:
        n_screws = spec.screws
    with_screw = set(rng.permutation(4)[:n_screws].tolist())
    for i, (hx, hy) in enumerate(holes):
        mask = np.zeros((height, width), np.uint8)
        cv2.circle(mask, (int(round(hx)), int(round(hy))), int(round(hole_r)), 255, -1)
        if i in with_screw:
            head = plate_tone * rng.uniform(0.45, 0.65)
            cv2.circle(canvas, (int(round(hx)), int(round(hy))), int(round(hole_r)), (head,) * 3, -1, cv2.LINE_AA)
            angle = rng.uniform(0, np.pi)
            dx, dy = np.cos(angle) * hole_r * 0.75, np.sin(angle) * hole_r * 0.75
            cv2.line(
                canvas,
                (int(hx - dx), int(hy - dy)),
                (int(hx + dx), int(hy + dy)),
                (head * 0.35,) * 3,
                max(1, int(hole_r * 0.25)),
                cv2.LINE_AA,
            )
            cv2.circle(
                canvas,
                (int(round(hx - hole_r * 0.3)), int(round(hy - hole_r * 0.3))),
                max(1, int(hole_r * 0.2)),
                (min(255, head * 1.5),) * 3,
                -1,
                cv2.LINE_AA,
            )
            layers.append(("screw", (hx, hy), mask))
        else:
            cv2.circle(canvas, (int(round(hx)), int(round(hy))), int(round(hole_r)), (bg * 0.5,) * 3, -1, cv2.LINE_AA)
            cv2.circle(
                canvas, (int(round(hx)), int(round(hy))), int(round(hole_r)), (plate_tone * 0.7,) * 3, 1, cv2.LINE_AA
            )
            layers.append(("empty_hole", (hx, hy), mask))
    return layers


def _draw_label(rng: np.random.Generator, c: _Canvas, spec: PartSpec) -> tuple[str, np.ndarray]:
    """The label (straight, skewed or absent) and its mask (empty when absent)."""
    canvas, width, height = c.image, c.width, c.height
    x0, y0, x1, y1 = c.box
    label = spec.label or str(rng.choice(["straight", "straight", "skewed", "absent"]))
    if label != "absent":
        lw, lh = (x1 - x0) * 0.34, (y1 - y0) * 0.22
        cx, cy = (x0 + x1) / 2 + rng.uniform(-0.05, 0.05) * (x1 - x0), y0 + (y1 - y0) * 0.32
        angle = rng.uniform(-3, 3) if label == "straight" else rng.choice([-1, 1]) * rng.uniform(14, 30)
        box = cv2.boxPoints(((cx, cy), (lw, lh), angle)).astype(np.int32)
        cv2.fillPoly(canvas, [box], (rng.uniform(225, 250),) * 3, cv2.LINE_AA)
        a = np.deg2rad(angle)
        for k in range(3):  # printed text bars, offset along the label's own vertical axis
            dy = ((k + 1) / 4 - 0.5) * lh * 0.8
            bar = cv2.boxPoints(
                ((cx - np.sin(a) * dy, cy + np.cos(a) * dy), (lw * rng.uniform(0.5, 0.8), lh * 0.1), angle)
            )
            cv2.fillPoly(canvas, [bar.astype(np.int32)], (40, 40, 40), cv2.LINE_AA)
        label_mask = np.zeros((height, width), np.uint8)
        cv2.fillPoly(label_mask, [box], 255)
    else:
        label_mask = np.zeros((height, width), np.uint8)
    return label, label_mask


def _draw_defects(
    rng: np.random.Generator, c: _Canvas, spec: PartSpec, layers: list[Layer], label_mask: np.ndarray
) -> list[Layer]:
    """Scratches, spots and dents on the plate, clear of the holes, the label and each other."""
    canvas, width, height, plate, plate_tone = c.image, c.width, c.height, c.plate, c.plate_tone
    x0, y0, x1, y1 = c.box
    defects: list[Layer] = []
    n_defects = int(rng.choice([0, 0, 1, 1, 2, 3])) if spec.defects is None else spec.defects
    keep_out: np.ndarray = cv2.dilate(label_mask, np.ones((5, 5), np.uint8))
    for mask_layer in [m for k, _, m in layers]:
        keep_out |= cv2.dilate(mask_layer, np.ones((9, 9), np.uint8))
    placed = 0
    for _ in range(n_defects * 30):
        if placed == n_defects:
            break
        kind = str(rng.choice(spec.defect_kinds))
        cx, cy = rng.uniform(x0 + 10, x1 - 10), rng.uniform(y0 + 10, y1 - 10)
        mask = np.zeros((height, width), np.uint8)
        if kind == "scratch":
            length = rng.uniform(0.1, 0.22) * width
            angle = rng.uniform(0, np.pi)
            dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
            p, q = (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy))
            cv2.line(mask, p, q, 255, 3)
            if np.any((mask > 0) & ((keep_out > 0) | (plate == 0))):
                continue
            tone = plate_tone + rng.choice([-1, 1]) * rng.uniform(55, 90)
            cv2.line(canvas, p, q, (float(np.clip(tone, 0, 255)),) * 3, 3, cv2.LINE_AA)
        elif kind == "crack":
            path = _crack_path(rng, (cx, cy), width)
            for line in path:
                cv2.polylines(mask, [line], False, 255, 3)
            if np.any((mask > 0) & ((keep_out > 0) | (plate == 0))):
                continue
            tone = (float(plate_tone * rng.uniform(0.15, 0.35)),) * 3
            for k, line in enumerate(path):  # the trunk 2 px, a fork 1 px
                cv2.polylines(canvas, [line], False, tone, 2 if k == 0 else 1, cv2.LINE_AA)
            cx, cy = (float(v) for v in path[0][len(path[0]) // 2])
        elif kind == "chip":
            notch = _chip_polygon(rng, c.box, width)
            cv2.fillPoly(mask, [notch], 255)
            mask &= plate
            if not mask.any() or np.any((mask > 0) & (keep_out > 0)):
                continue
            cv2.fillPoly(canvas, [notch], (float(c.bg),) * 3, cv2.LINE_AA)
            ys, xs = np.nonzero(mask)
            cx, cy = float(xs.mean()), float(ys.mean())
        else:
            axes = (rng.uniform(0.025, 0.05) * width, rng.uniform(0.02, 0.04) * width)
            angle = rng.uniform(0, 180)
            probe = np.zeros_like(mask)
            _draw_blob(np.zeros_like(canvas), probe, (cx, cy), axes, angle, (0, 0, 0))
            if np.any((probe > 0) & ((keep_out > 0) | (plate == 0))):
                continue
            if kind == "spot":
                color = (plate_tone * rng.uniform(0.3, 0.5),) * 3
                _draw_blob(canvas, mask, (cx, cy), axes, angle, color)
            else:  # dent: darker rim on one side, highlight on the other
                _draw_blob(canvas, mask, (cx, cy), axes, angle, (plate_tone * 0.7,) * 3)
                _draw_blob(
                    canvas,
                    np.zeros_like(mask),
                    (cx - axes[0] * 0.2, cy - axes[1] * 0.2),
                    (axes[0] * 0.6, axes[1] * 0.6),
                    angle,
                    (min(255, plate_tone * 1.25),) * 3,
                )
        keep_out |= cv2.dilate(mask, np.ones((9, 9), np.uint8))
        defects.append((kind, (cx, cy), mask))
        placed += 1
    return defects


def _crack_path(rng: np.random.Generator, start: tuple[float, float], width: int) -> list[np.ndarray]:
    """A crack's polylines: a jagged trunk (a random walk of short segments, each turning up to
    ±40°), and half of the time one fork from a vertex of it."""

    def walk(x: float, y: float, heading: float, length: float) -> np.ndarray:
        steps = int(rng.integers(6, 10))
        points = [(x, y)]
        for _ in range(steps):
            heading += rng.uniform(-0.7, 0.7)
            x, y = x + np.cos(heading) * length / steps, y + np.sin(heading) * length / steps
            points.append((x, y))
        return np.round(np.array(points)).astype(np.int32)

    heading = rng.uniform(0, 2 * np.pi)
    trunk = walk(*start, heading, rng.uniform(0.12, 0.22) * width)
    lines = [trunk]
    if rng.random() < 0.5:
        at = trunk[int(rng.integers(2, len(trunk) - 2))]
        lines.append(walk(float(at[0]), float(at[1]), heading + rng.choice([-1, 1]) * rng.uniform(0.6, 1.2),
                          rng.uniform(0.04, 0.08) * width))  # fmt: skip
    return lines


def _chip_polygon(rng: np.random.Generator, box: tuple[float, float, float, float], width: int) -> np.ndarray:
    """A notch broken out of one of the plate's four edges, between its corner holes: a jagged
    polygon from just outside the edge to a depth of 3–6 % of the frame's width."""
    x0, y0, x1, y1 = box
    side = int(rng.integers(4))
    along = rng.uniform(0.25, 0.75)
    span, depth = rng.uniform(0.1, 0.18) * width, rng.uniform(0.025, 0.045) * width
    n = int(rng.integers(3, 6))
    offsets = np.linspace(-span / 2, span / 2, n + 2)  # along the edge, ends on it
    depths = np.concatenate([[-2.0], rng.uniform(0.4, 1.0, n) * depth, [-2.0]])  # into the plate
    if side in (0, 1):  # top, bottom
        base, inward = (x0 + along * (x1 - x0), y0 if side == 0 else y1), (0.0, 1.0 if side == 0 else -1.0)
        points = [(base[0] + o, base[1] + inward[1] * d) for o, d in zip(offsets, depths, strict=True)]
    else:  # left, right
        base, inward = (x0 if side == 2 else x1, y0 + along * (y1 - y0)), (1.0 if side == 2 else -1.0, 0.0)
        points = [(base[0] + inward[0] * d, base[1] + o) for o, d in zip(offsets, depths, strict=True)]
    return np.round(np.array(points)).astype(np.int32)


def _shoot(rng: np.random.Generator, c: _Canvas, camera: Camera, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The final image and the 2×3 transform from the canvas to it: the lighting gradient, one small
    rigid transform (and the camera's), then blur, noise and the camera's photometry."""
    canvas, width, height = c.image, c.width, c.height
    gx, gy = rng.uniform(-0.25, 0.25, 2)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 1.0 + gx * (xx / width - 0.5) + gy * (yy / height - 0.5)
    canvas *= light[..., None]
    angle = rng.uniform(-4, 4)
    scale = rng.uniform(0.92, 1.06)
    shift = rng.uniform(-0.04, 0.04, 2) * (width, height)
    m: np.ndarray = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
    m[:, 2] += shift
    if camera.moves:
        m = (camera.matrix(width, height) @ np.vstack([m, [0.0, 0.0, 1.0]]))[:2]
    bg_fill = (float(c.bg),) * 3
    image: np.ndarray = cv2.warpAffine(canvas, m, (width, height), flags=cv2.INTER_LINEAR, borderValue=bg_fill)
    blur = rng.choice([0, 0, 3])
    if blur:
        image = cv2.GaussianBlur(image, (blur, blur), 0)
    image += np.asarray(rng.normal(0, rng.uniform(1.5, 5), image.shape), np.float32)
    if camera.brightness:
        image *= 1.0 + camera.brightness
    if camera.blur:
        image = cv2.GaussianBlur(image, (0, 0), camera.blur)
    if camera.noise:  # its own generator: the part's draws stay those of the seed
        image += np.asarray(np.random.default_rng([seed, 1]).normal(0, camera.noise, image.shape), np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    if camera.jpeg:
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(camera.jpeg)])
        image = np.asarray(cv2.imdecode(data, cv2.IMREAD_COLOR))
    return image, m


def _ground_truth(layers: list[Layer], m: np.ndarray, width: int, height: int) -> list[GroundTruthObject]:
    """Each layer's mask and point through the transform ``m``; objects out of the frame dropped."""
    objects = []
    for kind, (px, py), mask in layers:
        warped = cv2.warpAffine(mask, m, (width, height), flags=cv2.INTER_NEAREST) > 0
        if not warped.any():  # out of the frame (a camera that moved)
            continue
        wx, wy = m @ np.array([px, py, 1.0])
        inside = 0 <= round(wx) < width and 0 <= round(wy) < height and warped[int(round(wy)), int(round(wx))]
        if (
            kind in ("scratch", "crack") or not inside
        ):  # the point sits on the line: the mask pixel nearest the midpoint
            ys, xs = np.nonzero(warped)
            k = int(np.argmin((xs - wx) ** 2 + (ys - wy) ** 2))
            wx, wy = float(xs[k]), float(ys[k])
        objects.append(GroundTruthObject(kind=kind, point=(float(wx), float(wy)), mask=warped))
    return objects


def render_part(
    seed: int, width: int = 320, height: int = 240, spec: PartSpec | None = None, camera: Camera | None = None
) -> Part:
    """Render one part; the same seed, size, spec and camera give the same bytes.

    Under a ``camera`` that moves, objects that leave the frame are dropped and a partly visible
    object's point moves to its nearest visible mask pixel."""
    spec = spec or PartSpec()
    camera = camera or Camera()
    rng = np.random.default_rng(seed)  # one generator, drawn from in this order: the same seed, the same part
    # Draw on a plate-aligned canvas, then warp everything (image and masks) with one transform.
    canvas = _draw_plate(rng, width, height)
    layers = _draw_holes(rng, canvas, spec)
    label, label_mask = _draw_label(rng, canvas, spec)
    layers += _draw_defects(rng, canvas, spec, layers, label_mask)
    image, m = _shoot(rng, canvas, camera, seed)
    objects = _ground_truth(layers, m, width, height)
    label_region = cv2.warpAffine(label_mask, m, (width, height), flags=cv2.INTER_NEAREST) > 0
    return Part(image=image, seed=seed, objects=objects, label=label, label_mask=label_region)

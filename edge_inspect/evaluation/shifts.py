"""The camera shift suite: one camera change at a time (``edge_inspect.sim.Camera``: masks and points
move with the image). ``SHIFTS`` names every change the tools' robustness table knows;
``SHIFT_SUITE`` the ones the student's report holds to its bars (tools/distill/report.py) and the
gate runs (commands/gate.py): scale, rotation, brightness, blur."""

from __future__ import annotations

from ..sim import Camera

SHIFTS: dict[str, Camera] = {
    "scale0.8": Camera(scale=0.8), "scale1.2": Camera(scale=1.2),
    "rot+5": Camera(rotation=5), "rot-5": Camera(rotation=-5),
    "rot+10": Camera(rotation=10), "rot-10": Camera(rotation=-10),
    "shift+10%": Camera(shift=(0.1, 0.1)), "shift-10%": Camera(shift=(-0.1, -0.1)),
    "bright+30%": Camera(brightness=0.3), "bright-30%": Camera(brightness=-0.3),
    "blur1.5": Camera(blur=1.5), "noise8": Camera(noise=8), "jpeg40": Camera(jpeg=40),
}  # fmt: skip
SHIFT_SUITE = ("scale0.8", "scale1.2", "rot+5", "rot-5", "bright+30%", "bright-30%", "blur1.5")

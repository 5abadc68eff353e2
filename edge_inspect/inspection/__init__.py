"""The inspection domain: verdicts, check rules, the inspector that runs a recipe on a frame, and the overlay that draws it. Pure: no camera, PLC, log or web."""

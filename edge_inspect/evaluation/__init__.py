"""The model's evaluation on the appliance runtime (ONNX Runtime, no torch): the pointing, counting
and yes/no metrics, the records they score (generated parts, labelled frames), the camera shift
suite. The acceptance gate (commands/gate.py) and the distillation tools (tools/distill) both use
this one copy."""

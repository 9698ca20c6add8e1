"""Export: a model folder -> an ONNX Runtime or OpenVINO engine folder, int8 behind an accuracy gate."""

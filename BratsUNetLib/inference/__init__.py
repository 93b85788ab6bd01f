"""Segmenting cases with a trained network, one module per step: the options a user gives (:mod:`.options`), the
models loaded with their preprocessing (:mod:`.loaded_model`), one case from images to labels (:mod:`.pipeline`),
how the network runs (:mod:`.execution`) on the fastest backend that gives the same answer (:mod:`.backends`) or at
a reduced precision (OpenVINO and NNCF: :mod:`.openvino_engine`; int8's calibration cases: :mod:`.calibration`),
labels and volumes (:mod:`.postprocessing`), and the files written (:mod:`.writing`)."""

"""What the served modules compute, each built from its settings: classify (clas_system),
detect (det_system), features and recognition (rec_system, PP-ShiTu). per_image: how a request's
images are converted together, every bad one reported."""

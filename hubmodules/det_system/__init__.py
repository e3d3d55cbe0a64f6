"""det_system: PaddleDetection mainbody detection behind `hub serving start -m det_system`."""

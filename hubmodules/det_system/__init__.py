"""det_system: mainbody detection (built-in U²-Net-p saliency, or a PaddleDetection export) behind
`hub serving start -m det_system`."""

"""The ReasonIR / Reason-ModernColBERT training pipeline: config, data, and the PyLate builders."""

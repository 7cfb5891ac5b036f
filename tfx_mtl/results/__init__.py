"""Reading finished runs back: ML Metadata records, TFMA evaluations, the summary, review tables."""

"""The station's web side: operator HMI, QA review, REST API, event stream and metrics."""

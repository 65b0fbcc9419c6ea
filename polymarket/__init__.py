"""The Polymarket domain: models, stores, detectors, alert delivery, API clients."""

"""Infrastructure the stages stand on: verified model files, power-cut-safe files, the inference runner,
where things are on disk, and logging."""

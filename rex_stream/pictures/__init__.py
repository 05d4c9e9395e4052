"""Every drawing: explanations over photos, heatmaps, surfaces, several explanations at once,
tables, audio, CEM/L2X selections and evaluation curves. Pictures read results; they never run
a model (layer: below modes and runs, above the methods)."""

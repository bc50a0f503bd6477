"""Task planning over the scene graph: action vocabulary, validation, offline A* planner, LLM client."""

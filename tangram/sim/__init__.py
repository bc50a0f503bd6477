"""Robot simulation in pybullet: the scene rebuilt from the scene graph, a Franka Panda driven by IK,
post-condition checks in the physics, video and key frames."""

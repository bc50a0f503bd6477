"""ROS 2 message definitions (.msg text, as ROS 2 Humble ships them) for the MCAP writer.

mcap_ros2 encodes CDR from the schema text alone, so each schema is the top-level definition
followed by every dependency, separated the way `ros2 bag` writes them (a line of '=' and
`MSG: pkg/Type`).
"""

from __future__ import annotations

SEPARATOR = "=" * 80

_DEFS = {
    "builtin_interfaces/Time": "int32 sec\nuint32 nanosec\n",
    "builtin_interfaces/Duration": "int32 sec\nuint32 nanosec\n",
    "std_msgs/Header": "builtin_interfaces/Time stamp\nstring frame_id\n",
    "std_msgs/ColorRGBA": "float32 r\nfloat32 g\nfloat32 b\nfloat32 a\n",
    "std_msgs/String": "string data\n",
    "geometry_msgs/Vector3": "float64 x\nfloat64 y\nfloat64 z\n",
    "geometry_msgs/Point": "float64 x\nfloat64 y\nfloat64 z\n",
    "geometry_msgs/Quaternion": "float64 x 0\nfloat64 y 0\nfloat64 z 0\nfloat64 w 1\n",
    "geometry_msgs/Pose": "Point position\nQuaternion orientation\n",
    "geometry_msgs/Transform": "Vector3 translation\nQuaternion rotation\n",
    "geometry_msgs/TransformStamped": "std_msgs/Header header\nstring child_frame_id\nTransform transform\n",
    "tf2_msgs/TFMessage": "geometry_msgs/TransformStamped[] transforms\n",
    "visualization_msgs/Marker": (
        "int32 ARROW=0\nint32 CUBE=1\nint32 SPHERE=2\nint32 CYLINDER=3\nint32 LINE_STRIP=4\nint32 LINE_LIST=5\n"
        "int32 CUBE_LIST=6\nint32 SPHERE_LIST=7\nint32 POINTS=8\nint32 TEXT_VIEW_FACING=9\nint32 MESH_RESOURCE=10\n"
        "int32 TRIANGLE_LIST=11\nint32 ADD=0\nint32 MODIFY=0\nint32 DELETE=2\nint32 DELETEALL=3\n"
        "std_msgs/Header header\nstring ns\nint32 id\nint32 type\nint32 action\ngeometry_msgs/Pose pose\n"
        "geometry_msgs/Vector3 scale\nstd_msgs/ColorRGBA color\nbuiltin_interfaces/Duration lifetime\n"
        "bool frame_locked\ngeometry_msgs/Point[] points\nstd_msgs/ColorRGBA[] colors\nstring text\n"
        "string mesh_resource\nbool mesh_use_embedded_materials\n"
    ),
    "visualization_msgs/MarkerArray": "Marker[] markers\n",
    "sensor_msgs/JointState": (
        "std_msgs/Header header\nstring[] name\nfloat64[] position\nfloat64[] velocity\nfloat64[] effort\n"
    ),
}

_DEPENDS = {
    "std_msgs/Header": ["builtin_interfaces/Time"],
    "geometry_msgs/Pose": ["geometry_msgs/Point", "geometry_msgs/Quaternion"],
    "geometry_msgs/Transform": ["geometry_msgs/Vector3", "geometry_msgs/Quaternion"],
    "geometry_msgs/TransformStamped": ["std_msgs/Header", "geometry_msgs/Transform"],
    "tf2_msgs/TFMessage": ["geometry_msgs/TransformStamped"],
    "visualization_msgs/Marker": ["std_msgs/Header", "geometry_msgs/Pose", "geometry_msgs/Vector3",
                                  "std_msgs/ColorRGBA", "builtin_interfaces/Duration", "geometry_msgs/Point"],
    "visualization_msgs/MarkerArray": ["visualization_msgs/Marker"],
    "sensor_msgs/JointState": ["std_msgs/Header"],
}


def _closure(name: str) -> list[str]:
    seen: list[str] = []

    def visit(n: str) -> None:
        for dep in _DEPENDS.get(n, []):
            if dep not in seen:
                seen.append(dep)
                visit(dep)

    visit(name)
    return seen


def msgdef(datatype: str) -> str:
    """The full definition text of `datatype` ("pkg/msg/Type" or "pkg/Type") with its dependencies."""
    name = datatype.replace("/msg/", "/")
    parts = [_DEFS[name]]
    parts += [f"{SEPARATOR}\nMSG: {dep}\n{_DEFS[dep]}" for dep in _closure(name)]
    return "".join(parts)

"""sparsett_ros: ROS 2 adapter around sparsett_core."""
import pkgutil

# The generated interfaces (sparsett_ros.msg) may be installed in another prefix than this
# source package (development venv, colcon overlay): let Python find them there too.
__path__ = pkgutil.extend_path(__path__, __name__)


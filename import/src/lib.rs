//! podtrace-import (being built).

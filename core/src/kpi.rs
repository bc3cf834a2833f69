//! KPI engine (in progress).

# R -> .C -> native code that blocks in pause() (tests/r/native_block.c), for the native
# unwinder's ground truth. Usage: Rscript native_block.R SO_PATH [C|Call]
# The native code writes the ready file (XRTOP_READY) itself, just before it blocks.
args <- commandArgs(trailingOnly = TRUE)
dyn.load(args[[1]])
how <- if (length(args) > 1) args[[2]] else "C"
path <- Sys.getenv("XRTOP_READY")
inner_r <- function() {
  if (how == "C") .C("xr_block", path) else .Call("xr_call", path)
}
outer_r <- function() inner_r()
outer_r()

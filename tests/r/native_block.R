# R -> .C / .Call -> native code that blocks in pause() (tests/r/native_block.c), for the
# native unwinder's ground truth.
# Usage: Rscript native_block.R SO_PATH C|Call|signal [GO_FILE DONE_FILE]
# Without GO_FILE, R loads SO_PATH at once and the native code writes the ready file
# (XRTOP_READY) just before it blocks. With it, R writes the ready file itself, then loads
# SO_PATH only once GO_FILE exists (a library loaded after xrtop attached), and the native
# code writes DONE_FILE instead.
args <- commandArgs(trailingOnly = TRUE)
how <- args[[2]]
path <- Sys.getenv("XRTOP_READY")
if (length(args) > 2) {
  writeLines(as.character(Sys.getpid()), path)
  while (!file.exists(args[[3]])) Sys.sleep(0.02)
  path <- args[[4]]
}
dyn.load(args[[1]])
inner_r <- function() {
  switch(how,
    C = .C("xr_block", path),
    Call = .Call("xr_call", path),
    signal = .C("xr_signal", path)
  )
}
outer_r <- function() inner_r()
outer_r()

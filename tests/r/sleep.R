# An R that waits: Sys.sleep in a loop. Usage: Rscript sleep.R [SECONDS]
args <- commandArgs(trailingOnly = TRUE)
seconds <- if (length(args)) as.numeric(args[[1]]) else 60
nap <- function() Sys.sleep(0.5)
path <- Sys.getenv("XRTOP_READY")
deadline <- Sys.time() + seconds
if (nzchar(path)) writeLines(as.character(Sys.getpid()), path)
while (Sys.time() < deadline) nap()

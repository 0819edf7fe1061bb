@0xea97616675f786bc;
# The wire protocol between a supervisor and one of its workers, over a private socketpair.
# The supervisor bootstraps `Worker`; the worker sends results back through the `ResultSink`
# the supervisor hands it in `hello`.

$import "/capnp/c++.capnp".namespace("coropool::ipc::rpc");

# Jobs and results travel in batches, with the encoded values of a batch packed into one
# Data blob: per job the wire carries an id and an end offset, nothing more.

struct JobBatch {
  invoker @0 :UInt64;          # address of the task's invoker (same image on both sides: fork)
  target @1 :UInt64;           # address of the user function, or 0 for a captureless lambda
  ids @2 :List(UInt64);        # supervisor's in-flight slot ids, echoed back with the results
  argEnds @3 :List(UInt32);    # job i's encoded argument tuple is args[argEnds[i-1], argEnds[i])
  args @4 :Data;
  timeoutMs @5 :UInt32;        # deadline of each job once it runs; 0: none
}

struct Failure {
  id @0 :UInt64;
  typeName @1 :Text;    # demangled type of the exception thrown by the task
  message @2 :Text;     # what()
  kind @3 :Kind;
  enum Kind {
    exception @0;       # the task threw
    decode @1;          # the arguments did not decode in the worker
    cancelled @2;       # the job was cancelled before or while running
    timeout @3;         # the job ran past its deadline and was cancelled
    tooLarge @4;        # the encoded result is over the size limit for one value
  }
}

struct ResultBatch {
  ids @0 :List(UInt64);        # jobs that succeeded
  valueEnds @1 :List(UInt32);  # job i's encoded result is values[valueEnds[i-1], valueEnds[i])
  values @2 :Data;
  failures @3 :List(Failure);
}

interface ResultSink {
  # Everything that finished in one worker loop turn.
  done @0 (results :ResultBatch) -> ();
}

interface Worker {
  hello @0 (sink :ResultSink) -> (pid :Int32);
  # Queues the jobs and starts what it may; returns the results of the jobs that finished
  # right away (plain-R tasks), so a quick job costs one round trip. The rest arrive through
  # the ResultSink. The supervisor never has more jobs outstanding on one worker than its
  # window, and the worker runs at most child_concurrency of them at once.
  submit @1 (batches :List(JobBatch)) -> (results :ResultBatch);
  # Drops queued jobs and cancels running ones; each still gets a Failure (kind cancelled)
  # unless it had already finished.
  cancel @2 (ids :List(UInt64)) -> ();
  # Gives back those of the jobs `ids` that have not started, with their arguments, to run on
  # another worker; a job that started already is not among them and reports as usual.
  reclaim @3 (ids :List(UInt64)) -> (ids :List(UInt64), argEnds :List(UInt32), args :Data);
}

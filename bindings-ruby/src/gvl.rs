//! Running core work without the GVL.
//!
//! Every call that may wait (database I/O, `poll`, `shutdown`, `wait`) runs here so that other
//! Ruby threads keep running meanwhile: handler threads must be able to finish while `shutdown`
//! drains them, and a Rails app must not freeze while a worker thread waits for steps.
//!
//! We use `rb_thread_call_without_gvl2`, not `rb_thread_call_without_gvl`: the latter checks
//! interrupts itself and may raise (longjmp) straight through these Rust frames. The unblocking
//! function (called by Ruby for Thread#raise, Thread#kill, signals and VM shutdown) only cancels
//! the future we wait on; pending interrupts are then processed by `thread_check_ints`, which
//! turns a raised exception into an `Err` that unwinds normally.
//!
//! [`block_on`] waits on a future; [`blocking`] runs a synchronous wait (the log forwarder's
//! channel) in short slices, looking at the cancellation flag between them.

use std::ffi::c_void;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use magnus::{Error, Ruby};
use tokio::sync::Notify;

use crate::error::{self, BindError};

/// Fired by the unblocking function: the waiting future selects on `notify`, a synchronous wait
/// looks at `cancelled` between its slices.
pub struct Cancel {
    notify: Notify,
    cancelled: AtomicBool,
}

impl Cancel {
    fn new() -> Self {
        Cancel {
            notify: Notify::new(),
            cancelled: AtomicBool::new(false),
        }
    }

    /// Whether Ruby asked the blocking region to return (an interrupt is pending).
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}

unsafe extern "C" fn unblock(data: *mut c_void) {
    // SAFETY: `data` points at the `Cancel` on the stack of `call_without_gvl`, which outlives the
    // blocking region (Ruby stops calling the UBF before rb_thread_call_without_gvl2 returns).
    let cancel = unsafe { &*(data as *const Cancel) };
    // Sticky, unlike a permit: a synchronous wait may look at it several times.
    cancel.cancelled.store(true, Ordering::Release);
    // `notify_one` keeps a permit when nobody waits yet, so an early interrupt is not lost.
    cancel.notify.notify_one();
}

struct Call<'a, R> {
    func: Option<Box<dyn FnOnce() -> R + 'a>>,
    result: Option<std::thread::Result<R>>,
}

unsafe extern "C" fn trampoline<R>(data: *mut c_void) -> *mut c_void {
    // SAFETY: `data` is the `Call<R>` owned by `call_without_gvl`, alive for this call.
    let call = unsafe { &mut *(data as *mut Call<'_, R>) };
    if let Some(f) = call.func.take() {
        // A panic must not unwind into Ruby's C frames.
        call.result = Some(catch_unwind(AssertUnwindSafe(f)));
    }
    std::ptr::null_mut()
}

/// Runs `f` with the GVL released. Returns `None` when Ruby had an interrupt pending and did not
/// run `f` at all.
fn call_without_gvl<R>(f: impl FnOnce(&Cancel) -> R, cancel: &Cancel) -> Option<std::thread::Result<R>> {
    let mut call: Call<'_, R> = Call {
        func: Some(Box::new(|| f(cancel))),
        result: None,
    };
    // SAFETY: both pointers stay valid for the whole call; `trampoline` does not touch Ruby.
    unsafe {
        rb_sys::rb_thread_call_without_gvl2(
            Some(trampoline::<R>),
            &mut call as *mut Call<'_, R> as *mut c_void,
            Some(unblock),
            cancel as *const Cancel as *mut c_void,
        );
    }
    call.result
}

/// Drives `future` on the core's runtime without the GVL until it completes.
///
/// An interrupt (Ctrl-C, `Thread#raise`, `Timeout.timeout`, a signal trap) cancels the wait,
/// runs the interrupt with the GVL and, if it raised, drops `future` and returns the exception.
/// If the interrupt did not raise (a trap handler that only sets a flag), `interrupted` decides:
/// `Some(value)` returns it at once, `None` resumes waiting on the same future.
pub fn block_on<F>(
    ruby: &Ruby,
    future: F,
    mut interrupted: impl FnMut() -> Option<F::Output>,
) -> Result<F::Output, Error>
where
    F: Future,
{
    let runtime = tasker_core::runtime::runtime().map_err(|e| error::raise(ruby, BindError::Core(e)))?;
    let mut future = Box::pin(future);
    loop {
        let cancel = Cancel::new();
        let outcome = call_without_gvl(
            |cancel| {
                runtime.block_on(async {
                    tokio::select! {
                        biased;
                        v = &mut future => Some(v),
                        _ = cancel.notify.notified() => None,
                    }
                })
            },
            &cancel,
        );
        match outcome {
            Some(Ok(Some(value))) => return Ok(value),
            Some(Err(panic)) => return Err(error::panic(ruby, panic)),
            // Cancelled by the UBF, or not started because an interrupt was already pending.
            Some(Ok(None)) | None => {
                ruby.thread_check_ints()?;
                if let Some(value) = interrupted() {
                    return Ok(value);
                }
            }
        }
    }
}

/// Runs the synchronous wait `f` without the GVL until it returns `Some`.
///
/// `f` must return `None` soon after [`Cancel::is_cancelled`] turns true (wait in slices of a few
/// tens of milliseconds and look in between): Ruby then runs the pending interrupt with the GVL
/// and, if it raised (`Thread#kill`, `Thread#raise`, VM shutdown), returns the exception. If it
/// did not raise, `interrupted` decides as for [`block_on`]: `Some(value)` returns it at once,
/// `None` calls `f` again.
pub fn blocking<R>(
    ruby: &Ruby,
    mut f: impl FnMut(&Cancel) -> Option<R>,
    mut interrupted: impl FnMut() -> Option<R>,
) -> Result<R, Error> {
    loop {
        let cancel = Cancel::new();
        match call_without_gvl(&mut f, &cancel) {
            Some(Ok(Some(value))) => return Ok(value),
            Some(Err(panic)) => return Err(error::panic(ruby, panic)),
            // Cancelled, or not started because an interrupt was already pending.
            Some(Ok(None)) | None => {
                ruby.thread_check_ints()?;
                if let Some(value) = interrupted() {
                    return Ok(value);
                }
            }
        }
    }
}

//! [`Prefetch`]: row groups decoded a bounded window ahead of the consumer, on the rayon
//! pool, yielded in order.

use super::*;

type Work<T> = fn(&CaptureFile, usize, &ReadOptions) -> Result<Vec<T>>;

/// Decodes row groups on the rayon pool, a bounded window ahead of the consumer, and
/// yields their items in order.
pub struct Prefetch<T: Send + 'static> {
    files: Arc<Vec<CaptureFile>>,
    opts: Arc<ReadOptions>,
    work: Work<T>,
    /// Row groups still to start: (file index, row group index).
    todo: VecDeque<(usize, usize)>,
    in_flight: VecDeque<Receiver<Result<Vec<T>>>>,
    ready: std::vec::IntoIter<T>,
    window: usize,
    done: bool,
}

impl<T: Send + 'static> Prefetch<T> {
    pub(super) fn new(files: Arc<Vec<CaptureFile>>, opts: &ReadOptions, work: Work<T>) -> Self {
        let todo = files
            .iter()
            .enumerate()
            .flat_map(|(fi, f)| {
                (0..f.row_groups)
                    .filter(|&rg| row_group_may_match(f, rg, opts))
                    .map(move |rg| (fi, rg))
                    .collect::<Vec<_>>()
            })
            .collect();
        // Inside a rayon worker (e.g. the caller's own par_iter), blocking on tasks queued
        // behind us could starve the pool: decode inline there.
        let window = if rayon::current_thread_index().is_some() {
            0
        } else {
            (rayon::current_num_threads() * 2).max(2)
        };
        Prefetch {
            files,
            opts: Arc::new(opts.clone()),
            work,
            todo,
            in_flight: VecDeque::new(),
            ready: Vec::new().into_iter(),
            window,
            done: false,
        }
    }

    fn start(&mut self) {
        while self.in_flight.len() < self.window {
            let Some((fi, rg)) = self.todo.pop_front() else {
                break;
            };
            let (tx, rx) = sync_channel(1);
            let (files, opts, work) = (self.files.clone(), self.opts.clone(), self.work);
            rayon::spawn(move || {
                let _ = tx.send(guarded(&files[fi], rg, &opts, work));
            });
            self.in_flight.push_back(rx);
        }
    }

    fn next_group(&mut self) -> Option<Result<Vec<T>>> {
        if self.window == 0 {
            let (fi, rg) = self.todo.pop_front()?;
            return Some(guarded(&self.files[fi], rg, &self.opts, self.work));
        }
        self.start();
        let rx = self.in_flight.pop_front()?;
        Some(
            rx.recv().unwrap_or_else(|_| {
                Err(FormatError::Batch("row group decoder stopped".to_string()))
            }),
        )
    }
}

fn guarded<T>(f: &CaptureFile, rg: usize, opts: &ReadOptions, work: Work<T>) -> Result<Vec<T>> {
    catch_quiet(|| work(f, rg, opts))
        .unwrap_or_else(|p| Err(FormatError::corrupt(&f.path, panic_message(p))))
}

impl<T: Send + 'static> Iterator for Prefetch<T> {
    type Item = Result<T>;
    fn next(&mut self) -> Option<Result<T>> {
        loop {
            if let Some(item) = self.ready.next() {
                return Some(Ok(item));
            }
            if self.done {
                return None;
            }
            match self.next_group() {
                None => {
                    self.done = true;
                    return None;
                }
                Some(Ok(items)) => self.ready = items.into_iter(),
                Some(Err(e)) => {
                    self.done = true;
                    self.todo.clear();
                    self.in_flight.clear();
                    return Some(Err(e));
                }
            }
        }
    }
}

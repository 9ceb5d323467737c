//! Giving memory back to the kernel.

/// Drops from this process's resident set the pages of read-only file mappings that hold
/// no private (copied-on-write) page: the code and read-only data it ran once and may
/// never run again (a long-lived monitor's start-up code), faulted back in from the page
/// cache if it does. Relocated read-only data, which has private pages, stays.
pub fn release_clean_read_only_mappings() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            let read_only = matches!(fields.next(), Some("r-xp" | "r--p"));
            current = match (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) {
                (Ok(s), Ok(e)) if read_only => Some((s, e)),
                _ => None,
            };
        } else if first == "Anonymous:"
            && let (Some((start, end)), Some("0")) = (current.take(), fields.next())
        {
            // SAFETY: a read-only mapping of ours holding only unmodified file pages:
            // MADV_DONTNEED drops their page table entries, and the next access reads
            // the same bytes from the file again.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
    }
}

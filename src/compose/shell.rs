//! A string `command` or `entrypoint` as words, the way Compose splits it: POSIX shell-word rules
//! (Python's `shlex.split`, which docker-compose uses), with no shell run afterwards. Quotes group
//! words; a backslash outside quotes takes the next character literally, and inside double quotes
//! only before `"` or `\`; nothing else is special. `;`, `|`, `>`, `$` and `#` are ordinary
//! characters of a word: `echo hi >/dev/null` is three words passed to `echo`, as Compose passes
//! them. (To run a shell, write `sh -c '…'`.)

/// The words of `line`, or why it cannot be split (an unclosed quote, a trailing backslash).
pub(crate) fn split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("a ' is not closed".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("a \" is not closed".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("a \" is not closed".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("it ends with a backslash that escapes nothing".into()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::split;

    fn s(line: &str) -> Vec<String> {
        split(line).unwrap()
    }

    #[test]
    fn as_shlex_splits() {
        assert_eq!(s(r#"printf "a\nb %s" x"#), ["printf", r"a\nb %s", "x"], "a backslash in double quotes stays");
        assert_eq!(s("echo hello >/dev/null"), ["echo", "hello", ">/dev/null"], "no word is dropped");
        assert_eq!(
            s(r#"/bin/bash -c "envsubst < in > out && nginx -g 'daemon off;'""#),
            ["/bin/bash", "-c", "envsubst < in > out && nginx -g 'daemon off;'"]
        );
        assert_eq!(s("sh -c \"echo $HOME\""), ["sh", "-c", "echo $HOME"]);
        assert_eq!(s(r#"a\ b "c\"d" 'e\f' '' x"#), ["a b", "c\"d", r"e\f", "", "x"]);
        assert_eq!(s("--opt=\"a b\"c # not a comment"), ["--opt=a bc", "#", "not", "a", "comment"]);
        assert_eq!(s("  "), Vec::<String>::new());
        assert_eq!(s(r"a\\b"), [r"a\b"]);
        assert!(split("echo 'open").is_err());
        assert!(split("echo \"open").is_err());
        assert!(split("echo \\").is_err());
    }
}

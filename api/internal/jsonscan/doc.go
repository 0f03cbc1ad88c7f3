// Package jsonscan walks JSON that is already known to be valid (command.ScanJSON) without
// reflection. The API server's request decoder and the client's reply decoder use it for
// the frames nearly every request and reply are: they recognise such a frame field for
// field and leave any other (an unknown key, a string that needs unescaping, a number that
// is not an integer, null) to encoding/json, so both paths decode alike.
package jsonscan

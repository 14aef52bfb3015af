import type { InputHTMLAttributes } from 'react';
import { ApiError } from '../api/client';

/** The id of the form's error message, which an invalid field points at. */
export const FORM_ERROR_ID = 'form-error';

/** A labelled input, marked invalid (and described by the form's error
 * message) when the API's error names this field. */
export function Field({
  label,
  name,
  error,
  hint,
  ...input
}: InputHTMLAttributes<HTMLInputElement> & {
  label: string;
  name: string;
  error: unknown;
  hint?: string;
}) {
  const id = `field-${name}`;
  const invalid = error instanceof ApiError && error.field === name;
  const describedBy = [hint && `${id}-hint`, invalid && FORM_ERROR_ID].filter(Boolean).join(' ');
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      {hint && (
        <span className="hint" id={`${id}-hint`}>
          {hint}
        </span>
      )}
      <input
        id={id}
        name={name}
        aria-invalid={invalid || undefined}
        aria-describedby={describedBy || undefined}
        {...input}
      />
    </div>
  );
}

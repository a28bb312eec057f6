/** How an action ended, said where it was done: a failure as an alert, a success in a polite live region. */

export type Result = { text: string; failed: boolean };

export function Outcome({ result }: { result?: Result }) {
  return (
    <>
      {result?.failed && (
        <p class="error" role="alert">
          {result.text}
        </p>
      )}
      <p class="hint outcome" aria-live="polite">
        {result && !result.failed ? result.text : ""}
      </p>
    </>
  );
}

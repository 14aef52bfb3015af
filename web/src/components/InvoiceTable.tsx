import type { Invoice } from '../api/types';
import { formatDate, formatMoney } from '../format';

export function InvoiceTable({ invoices }: { invoices: Invoice[] }) {
  if (invoices.length === 0) return <p>No invoices yet.</p>;
  return (
    <table className="invoices">
      <caption className="visually-hidden">Invoices, newest first</caption>
      <thead>
        <tr>
          <th scope="col">Invoice</th>
          <th scope="col">Date</th>
          <th scope="col">Period</th>
          <th scope="col" className="num">
            Amount
          </th>
          <th scope="col">Status</th>
        </tr>
      </thead>
      <tbody>
        {invoices.map((i) => (
          <tr key={i.id}>
            <td>
              {i.hosted_invoice_url ? (
                <a href={i.hosted_invoice_url}>{i.number ?? i.id}</a>
              ) : (
                (i.number ?? i.id)
              )}
            </td>
            <td>{formatDate(i.date)}</td>
            <td>
              {i.period_start && i.period_end
                ? `${formatDate(i.period_start)} – ${formatDate(i.period_end)}`
                : '—'}
            </td>
            <td className="num">{formatMoney(i.amount, i.currency)}</td>
            <td>{i.status}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
